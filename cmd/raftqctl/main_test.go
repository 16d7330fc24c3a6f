package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/ports"
)

// The tests run the built raftqctl against a real three-node cluster
// that TestMain starts (ports 32384-32767, data in a temporary directory)
// and stops.
var (
	raftqBin, ctlBin string
	endpoints        string
	peers            []string
	tmp              string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if tmp, err = os.MkdirTemp("", "raftqctl"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	raftqBin, ctlBin = filepath.Join(tmp, "raftq"), filepath.Join(tmp, "raftqctl")
	for bin, pkg := range map[string]string{raftqBin: "../raftq", ctlBin: "."} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	var apis []string
	for range 4 { // the fourth pair for the node the membership test adds
		api, err1 := ports.Free(32384, 384)
		peer, err2 := ports.Free(32384, 384)
		if err1 != nil || err2 != nil {
			fmt.Fprintln(os.Stderr, err1, err2)
			return 1
		}
		apis, peers = append(apis, api), append(peers, "http://"+peer)
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}()
	for i := range 3 {
		p, err := startNode(i+1, apis[i], strings.Join(peers[:3], ","), false)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		procs = append(procs, p)
	}
	endpoints = "http://" + strings.Join(apis[:3], ",http://")
	extraAPI = apis[3]
	for _, api := range apis[:3] {
		if err := waitReady("http://"+api, 2*time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

var extraAPI string

func startNode(id int, api, cluster string, join bool) (*exec.Cmd, error) {
	dir := filepath.Join(tmp, fmt.Sprint("node", id))
	logf, err := os.Create(dir + ".log")
	if err != nil {
		return nil, err
	}
	args := []string{"--id", fmt.Sprint(id), "--cluster", cluster, "--api-addr", api, "--data-dir", dir}
	if join {
		args = append(args, "--join", "--listen-peer", strings.TrimPrefix(peers[id-1], "http://"))
	}
	p := exec.Command(raftqBin, args...)
	p.Stdout, p.Stderr = logf, logf
	return p, p.Start()
}

// waitReady polls /readyz until 200, generously: CI machines are busy.
func waitReady(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s", url, within)
}

// ctl runs raftqctl with args (and stdin) and returns its stdout, its
// stderr and its exit status.
func ctl(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctlBin, append([]string{"--endpoints", endpoints}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// ok runs raftqctl and fails the test unless it exits 0.
func ok(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errs, code := ctl(t, stdin, args...)
	if code != 0 {
		t.Fatalf("raftqctl %v: exit %d: %s", args, code, errs)
	}
	return out
}

func jsonOf(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
}

// Messages and leases: bodies from an argument, a file and stdin; get
// writes the raw body; tables for people, JSON for scripts.
func TestMessages(t *testing.T) {
	file := filepath.Join(t.TempDir(), "body")
	os.WriteFile(file, []byte("from a file"), 0o600)
	ok(t, "", "put", "m", "from an argument")
	ok(t, "", "put", "m", "@"+file, "--attr", "kind=test", "--attr", "n:Number=7", "--group", "g1")
	var put struct {
		Queue string
		ID    uint64
	}
	jsonOf(t, ok(t, "from stdin", "put", "m", "-o", "json"), &put)
	if put.Queue != "m" || put.ID != 3 {
		t.Fatalf("put -o json: %+v", put)
	}
	if out := ok(t, "", "get", "m"); out != "from an argument" {
		t.Fatalf("get wrote %q", out)
	}
	table := ok(t, "", "lease", "m", "--ttl", "1m")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "from a file") ||
		strings.Index(lines[0], "TOKEN") != strings.Index(lines[1], strings.Fields(lines[1])[1]) {
		t.Fatalf("lease table not aligned:\n%s", table)
	}
	tok := strings.Fields(lines[1])[1]
	var leases []struct {
		ID    uint64 `json:"id"`
		Body  string `json:"body"`
		Token string `json:"lease_token"`
		Group string `json:"group"`
	}
	jsonOf(t, ok(t, "", "lease", "m", "-o", "json", "--max", "5"), &leases)
	if len(leases) != 1 || leases[0].Body != "from stdin" {
		t.Fatalf("lease -o json: %+v", leases)
	}
	ok(t, "", "extend", "m", "2", tok, "--ttl", "2m")
	ok(t, "", "ack", "m", "2", tok)
	_, errs, code := ctl(t, "", "ack", "m", "2", tok)
	if code == 0 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.HasPrefix(errs, "raftqctl: raftq 404") {
		t.Fatalf("an ack of an acked message: %d %q", code, errs)
	}
	ok(t, "", "release", "m", fmt.Sprint(leases[0].ID), leases[0].Token)
	var peeked []struct {
		ID   uint64
		Body string
	}
	jsonOf(t, ok(t, "", "peek", "m", "-o", "json"), &peeked)
	if len(peeked) != 1 || peeked[0].Body != "from stdin" {
		t.Fatalf("peek: %+v", peeked)
	}
	if out := ok(t, "", "purge", "m"); !strings.Contains(out, "PURGED") || !strings.Contains(out, " 1") {
		t.Fatalf("purge: %s", out)
	}
	if out := ok(t, "", "get", "m"); out != "" {
		t.Fatalf("get of an empty queue: %q", out)
	}
	ok(t, "", "put", "m", "last", "--attr", "kind=x")
	var got struct {
		Body       string                                  `json:"body"`
		Attributes map[string]struct{ Type, Value string } `json:"attributes"`
	}
	jsonOf(t, ok(t, "", "get", "m", "-o", "json"), &got)
	if got.Body != "last" || got.Attributes["kind"].Value != "x" || got.Attributes["kind"].Type != "String" {
		t.Fatalf("get -o json: %+v", got)
	}
	for _, bad := range [][]string{{"get", "bad name"}, {"put"}, {"ack", "m", "x", "t"}, {"lease", "m", "--max", "0"}, {"get", "m", "-o", "yaml"}, {"frob"}} {
		if _, errs, code := ctl(t, "", bad...); code == 0 || !strings.HasPrefix(errs, "raftqctl: ") || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q", bad, code, errs)
		}
	}
}

// Queues, their config and stats, limits, status, and deletion.
func TestAdmin(t *testing.T) {
	ok(t, "", "put", "adm", "x")
	if out := ok(t, "", "queues"); !strings.Contains(out, "QUEUE") || !strings.Contains(out, "adm") {
		t.Fatalf("queues:\n%s", out)
	}
	var cfg struct {
		MaxMessages   int64  `json:"max_messages"`
		VisibilityMS  int64  `json:"visibility_timeout_ms"`
		DeadLetter    string `json:"dead_letter_queue"`
		MaxDeliveries uint64 `json:"max_deliveries"`
	}
	jsonOf(t, ok(t, "", "queue", "config", "adm", "--max-messages", "5", "--visibility-timeout", "45s", "--max-deliveries", "3",
		"--dead-letter-queue", "adm.dlq", "-o", "json"), &cfg)
	if cfg.MaxMessages != 5 || cfg.VisibilityMS != 45000 || cfg.DeadLetter != "adm.dlq" || cfg.MaxDeliveries != 3 {
		t.Fatalf("config set: %+v", cfg)
	}
	if out := ok(t, "", "queue", "config", "adm"); !strings.Contains(out, "45s") || !strings.Contains(out, "adm.dlq") {
		t.Fatalf("config show:\n%s", out)
	}
	var st struct {
		Depth  int
		Totals struct{ Enqueued int }
	}
	jsonOf(t, ok(t, "", "queue", "stats", "adm", "-o", "json"), &st)
	if st.Depth != 1 || st.Totals.Enqueued != 1 {
		t.Fatalf("stats: %+v", st)
	}
	var lim struct {
		MaxQueues int64 `json:"max_queues"`
	}
	jsonOf(t, ok(t, "", "limits", "set", "--max-queues", "500", "-o", "json"), &lim)
	if lim.MaxQueues != 500 {
		t.Fatalf("limits set: %+v", lim)
	}
	if out := ok(t, "", "limits", "get"); !strings.Contains(out, "500") {
		t.Fatalf("limits get:\n%s", out)
	}
	if _, errs, code := ctl(t, "", "limits", "set"); code == 0 || !strings.Contains(errs, "--max-queues") {
		t.Fatalf("limits set without a limit: %d %s", code, errs)
	}
	out := ok(t, "", "status")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || strings.Count(out, " yes") != 3 {
		t.Fatalf("status:\n%s", out)
	}
	ok(t, "", "queue", "delete", "adm")
	if _, errs, code := ctl(t, "", "queue", "stats", "adm"); code == 0 || !strings.Contains(errs, "404") {
		t.Fatalf("stats of a deleted queue: %d %s", code, errs)
	}
	// RAFTQ_ENDPOINTS instead of --endpoints.
	cmd := exec.Command(ctlBin, "queues", "-o", "json")
	cmd.Env = append(os.Environ(), "RAFTQ_ENDPOINTS="+endpoints)
	if b, err := cmd.Output(); err != nil || !strings.HasPrefix(string(b), "[") {
		t.Fatalf("with RAFTQ_ENDPOINTS: %v %s", err, b)
	}
}

// consume prints and acks, or runs --exec per message with the body on
// stdin, acking on exit 0 and releasing otherwise; Ctrl-C stops it
// cleanly.
func TestConsume(t *testing.T) {
	for _, b := range []string{"a", "b", "c"} {
		ok(t, "", "put", "work", b)
	}
	if out := ok(t, "", "consume", "work", "--count", "2", "--wait", "1s"); out != "a\nb\n" {
		t.Fatalf("consume printed %q", out)
	}
	log := filepath.Join(t.TempDir(), "log")
	ok(t, "", "consume", "work", "--count", "1", "--exec", `echo "$RAFTQ_MESSAGE_ID $(cat)" >> `+log)
	if b, _ := os.ReadFile(log); !regexp.MustCompile(`^[0-9]+ c\n$`).Match(b) {
		t.Fatalf("--exec wrote %q", b)
	}
	ok(t, "", "put", "work", "fails")
	cmd := exec.Command(ctlBin, "--endpoints", endpoints, "consume", "work", "--exec", "exit 3", "--wait", "1s")
	var errb syncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); !strings.Contains(errb.String(), "released"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the failing command was never run: %s", errb.String())
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("consume after Ctrl-C: %v\n%s", err, errb.String())
	}
	var st struct{ Depth, Leased, Delayed int }
	jsonOf(t, ok(t, "", "queue", "stats", "work", "-o", "json"), &st)
	if st.Depth+st.Delayed != 1 || st.Leased != 0 {
		t.Fatalf("the failed message is not back: %+v", st)
	}
}

// Membership: list, add a learner, start it, promote it, hand it the
// leadership, then remove it.
func TestNodes(t *testing.T) {
	var list struct {
		Leader uint64                `json:"leader"`
		Nodes  []struct{ ID uint64 } `json:"nodes"`
	}
	jsonOf(t, ok(t, "", "nodes", "list", "-o", "json"), &list)
	if len(list.Nodes) != 3 || list.Leader == 0 {
		t.Fatalf("nodes list: %+v", list)
	}
	if out := ok(t, "", "nodes", "list"); !strings.Contains(out, "leader") || strings.Count(out, "follower") != 2 {
		t.Fatalf("nodes list table:\n%s", out)
	}
	ok(t, "", "nodes", "add", "4", peers[3], "--learner")
	p, err := startNode(4, extraAPI, strings.Join(peers, ","), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Process.Kill(); p.Wait() })
	if err := waitReady("http://"+extraAPI, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		_, errs, code := ctl(t, "", "nodes", "promote", "4")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) { // refused while the learner catches up
			t.Fatalf("promote: %s", errs)
		}
	}
	ok(t, "", "leader", "transfer", "4")
	jsonOf(t, ok(t, "", "nodes", "list", "-o", "json"), &list)
	if list.Leader != 4 || len(list.Nodes) != 4 {
		t.Fatalf("after the transfer: %+v", list)
	}
	ok(t, "", "leader", "transfer", "1")
	ok(t, "", "nodes", "remove", "4")
	jsonOf(t, ok(t, "", "nodes", "list", "-o", "json"), &list)
	if len(list.Nodes) != 3 {
		t.Fatalf("after the removal: %+v", list)
	}
}

// syncBuffer is a buffer a child's output goroutine writes while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
