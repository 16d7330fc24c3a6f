// Package e2e runs real raftq processes on loopback and talks HTTP to them.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/ports"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "raftq-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "raftq")
	build := exec.Command("go", "build", "-o", binary, "../cmd/raftq")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building raftq:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address for a node, from 20000-31999 (the
// fault suite draws from 10000-19999; see ports.Free).
func freePort(t *testing.T) string {
	t.Helper()
	addr, err := ports.Free(20000, 12000)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

type proc struct {
	id      int
	api     string // http://host:port
	peer    string // http://host:port
	join    bool   // started with --join (added at runtime)
	dataDir string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	flags   []string // this node's own, after the cluster's
}

type cluster struct {
	t     *testing.T
	procs []*proc
	flags []string
	peers string
}

// startCluster starts n nodes with extra flags and waits for a leader.
func startCluster(t *testing.T, n int, flags ...string) *cluster {
	return startClusterOn(t, n, nil, flags...)
}

// startClusterOn is startCluster with node i's data dir in dirs[i] where
// given.
func startClusterOn(t *testing.T, n int, dirs map[int]string, flags ...string) *cluster {
	c := prepareCluster(t, n, dirs, flags...)
	c.startAll()
	return c
}

// startAll starts every node and waits for a leader.
func (c *cluster) startAll() {
	for i := range c.procs {
		c.start(i)
	}
	c.leader()
}

// prepareCluster picks the ports and dirs of a cluster, starting nothing.
func prepareCluster(t *testing.T, n int, dirs map[int]string, flags ...string) *cluster {
	c := &cluster{t: t, flags: flags}
	var peers []string
	for i := 1; i <= n; i++ {
		peers = append(peers, "http://"+freePort(t))
		dataDir := filepath.Join(t.TempDir(), "data")
		if d, ok := dirs[i-1]; ok {
			dataDir = filepath.Join(d, "data")
		}
		c.procs = append(c.procs, &proc{id: i, api: "http://" + freePort(t), peer: peers[i-1],
			dataDir: dataDir, logPath: filepath.Join(t.TempDir(), "log")})
	}
	c.peers = strings.Join(peers, ",")
	t.Cleanup(func() {
		for _, p := range c.procs {
			if p.running() {
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			for _, p := range c.procs {
				b, _ := os.ReadFile(p.logPath)
				t.Logf("---- log of node %d (last 4KB) ----\n%s", p.id, tail(b, 4096))
			}
		}
	})
	return c
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (c *cluster) start(i int) {
	c.spawn(i)
	c.waitServing(c.procs[i])
}

// spawn starts node i without waiting for it to serve.
func (c *cluster) spawn(i int) {
	p := c.procs[i]
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"--id", strconv.Itoa(p.id), "--cluster", c.peers,
		"--api-addr", hostPort(p.api), "--data-dir", p.dataDir}, c.flags...)
	args = append(args, p.flags...)
	if p.join {
		args = append(args, "--join", "--listen-peer", hostPort(p.peer))
	}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); logf.Close(); close(p.exited) }()
}

// hostPort is a URL's host:port.
func hostPort(u string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
}

// running reports whether p's process was started and has not exited.
// (cmd.ProcessState is written by Wait in another goroutine; exited is
// the synchronised signal.)
func (p *proc) running() bool {
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// newProc prepares node id for a runtime addition: its ports and dirs, and
// its peer URL in the --cluster every node is started with from now on.
func (c *cluster) newProc(id int) *proc {
	p := &proc{id: id, api: "http://" + freePort(c.t), peer: "http://" + freePort(c.t), join: true,
		dataDir: filepath.Join(c.t.TempDir(), "data"), logPath: filepath.Join(c.t.TempDir(), "log")}
	c.procs = append(c.procs, p)
	c.peers += "," + p.peer
	return p
}

// waitServing polls until the node's API port answers.
func (c *cluster) waitServing(p *proc) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			c.t.Fatalf("node %d exited during start: %v", p.id, p.cmd.ProcessState)
		default:
		}
		if conn, err := net.DialTimeout("tcp", hostPort(p.api), time.Second); err == nil {
			conn.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("node %d did not start serving", p.id)
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *cluster) kill(i int) { c.signal(i, syscall.SIGKILL) }

// terminate sends SIGTERM, waits, and checks a clean exit.
func (c *cluster) terminate(i int) {
	c.signal(i, syscall.SIGTERM)
	if code := c.procs[i].cmd.ProcessState.ExitCode(); code != 0 {
		c.t.Fatalf("node %d exited with %d after SIGTERM", i+1, code)
	}
}

func (c *cluster) signal(i int, sig syscall.Signal) {
	p := c.procs[i]
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		c.t.Fatalf("node %d did not exit after %v", p.id, sig)
	}
}

type nodesView struct {
	Leader uint64 `json:"leader"`
	Nodes  []struct {
		ID       uint64   `json:"id"`
		PeerURLs []string `json:"peer_urls"`
		APIURL   string   `json:"api_url"`
		Learner  bool     `json:"learner"`
		IsLeader bool     `json:"is_leader"`
	} `json:"nodes"`
}

// leader polls running nodes until one reports itself leader; returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i, p := range c.procs {
			if !p.running() {
				continue
			}
			var v nodesView
			if status, _ := getJSON(p.api+"/mgmt/nodes", &v); status == http.StatusOK && v.Leader == uint64(p.id) {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no leader")
	return -1
}

var client = &http.Client{Timeout: 20 * time.Second, Transport: harnessTokens}

// harnessTokens adds a bearer token to the harness's requests to the
// hosts a test registered (a cluster started with --auth-token-file), so
// that its helpers work there; requests that test auth use rawClient.
var harnessTokens = &tokenTransport{base: http.DefaultTransport}

type tokenTransport struct {
	base  http.RoundTripper
	hosts sync.Map // host:port → token
	tls   sync.Map // host:port → the RoundTripper for a TLS cluster
}

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok, ok := t.hosts.Load(r.URL.Host); ok && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	if rt, ok := t.tls.Load(r.URL.Host); ok {
		return rt.(http.RoundTripper).RoundTrip(r)
	}
	return t.base.RoundTrip(r)
}

// CloseIdleConnections closes every transport's idle connections (tests
// that count connections rely on it, through client.CloseIdleConnections).
func (t *tokenTransport) CloseIdleConnections() {
	type closer interface{ CloseIdleConnections() }
	if c, ok := t.base.(closer); ok {
		c.CloseIdleConnections()
	}
	t.tls.Range(func(_, rt any) bool {
		if c, ok := rt.(closer); ok {
			c.CloseIdleConnections()
		}
		return true
	})
}

// rawClient sends exactly what a test builds.
var rawClient = &http.Client{Timeout: 20 * time.Second}

func getJSON(url string, v any) (int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(method, url, contentType string, body io.Reader) (response, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return response{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}, err
}

// enqueue sends body to queue on node p and returns the assigned id, or
// an error when the outcome is not a 201.
func enqueue(p *proc, queue, body string) (uint64, error) {
	r, err := do(http.MethodPut, p.api+"/queues/"+queue, "text/plain", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	if r.status != http.StatusCreated {
		return 0, fmt.Errorf("enqueue: %d %s", r.status, r.body)
	}
	var res struct{ ID uint64 }
	return res.ID, json.Unmarshal(r.body, &res)
}

func mustEnqueue(t *testing.T, p *proc, queue, body string) uint64 {
	t.Helper()
	id, err := enqueue(p, queue, body)
	if err != nil {
		t.Fatalf("node %d: %v", p.id, err)
	}
	return id
}

// dequeue pops the head of queue on node p: found=false on 204.
func dequeue(p *proc, queue string) (body string, id uint64, found bool, err error) {
	r, err := do(http.MethodGet, p.api+"/queues/"+queue, "", nil)
	switch {
	case err != nil:
		return "", 0, false, err
	case r.status == http.StatusNoContent:
		return "", 0, false, nil
	case r.status != http.StatusOK:
		return "", 0, false, fmt.Errorf("dequeue: %d %s", r.status, r.body)
	}
	id, err = strconv.ParseUint(r.header.Get("Message-Id"), 10, 64)
	return string(r.body), id, true, err
}

// drain pops queue on node p until it is empty, retrying transient errors.
func drain(t *testing.T, p *proc, queue string) []string {
	t.Helper()
	var out []string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		body, _, found, err := dequeue(p, queue)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !found {
			return out
		}
		out = append(out, body)
	}
	t.Fatalf("draining %s on node %d did not finish", queue, p.id)
	return nil
}

// depths reads GET /queues on node p.
func depths(p *proc) (map[string]int, error) {
	var v struct {
		Queues []struct {
			Name  string
			Depth int
		}
	}
	status, err := getJSON(p.api+"/queues", &v)
	if err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("GET /queues: %d %v", status, err)
	}
	out := map[string]int{}
	for _, q := range v.Queues {
		out[q.Name] = q.Depth
	}
	return out, nil
}

func bigBody(n int) *bytes.Reader { return bytes.NewReader(bytes.Repeat([]byte("x"), n)) }
