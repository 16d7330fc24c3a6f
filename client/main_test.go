package client_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/ports"
)

// TestMain builds raftq and starts one real node for the examples, in a
// temporary directory on a free port, and stops it after.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "raftq-client")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "raftq")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/raftq").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building raftq: %v\n%s", err, out)
		return 1
	}
	api, err1 := ports.Free(32000, 384)
	peer, err2 := ports.Free(32000, 384)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, err1, err2)
		return 1
	}
	logf, _ := os.Create(filepath.Join(dir, "node.log"))
	node := exec.Command(bin, "--id", "1", "--cluster", "http://"+peer, "--api-addr", api, "--data-dir", filepath.Join(dir, "data"))
	node.Stdout, node.Stderr = logf, logf
	if err := node.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { node.Process.Kill(); node.Wait() }()
	endpoints = []string{"http://" + api}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for { // poll until ready, generously: CI machines are busy
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoints[0]+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if ctx.Err() != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "node.log"))
			fmt.Fprintf(os.Stderr, "raftq did not become ready:\n%s", b)
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	return m.Run()
}
