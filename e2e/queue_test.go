package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestFIFOAcrossNodes(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	for i := range 30 {
		if id := mustEnqueue(t, c.procs[i%3], "jobs", fmt.Sprint("m", i)); id != uint64(i+1) {
			t.Fatalf("message %d got id %d", i, id)
		}
	}
	for _, p := range c.procs { // every node answers the same, linearizably
		if d, err := depths(p); err != nil || d["jobs"] != 30 {
			t.Fatalf("node %d: depths %v %v", p.id, d, err)
		}
	}
	for i := range 30 {
		body, id, found, err := dequeue(c.procs[(i+1)%3], "jobs")
		if err != nil || !found || body != fmt.Sprint("m", i) || id != uint64(i+1) {
			t.Fatalf("dequeue %d: %q id %d found %v err %v", i, body, id, found, err)
		}
	}
	if _, _, found, err := dequeue(c.procs[2], "jobs"); found || err != nil {
		t.Fatalf("drained queue: found %v err %v", found, err)
	}
	if _, _, found, err := dequeue(c.procs[0], "never-used"); found || err != nil {
		t.Fatalf("unknown queue: found %v err %v", found, err)
	}
}

// TestKillLeaderMidStream kills -9 the leader while producers run, then
// checks every acknowledged message is dequeued exactly once, in order.
func TestKillLeaderMidStream(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, "--request-timeout", "2s")
	var (
		mu      sync.Mutex
		acked   = map[string]bool{}
		unknown = map[string]bool{}
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf("w%d-%d", w, i)
				p := c.procs[rng.IntN(len(c.procs))]
				_, err := enqueue(p, "stream", body)
				mu.Lock()
				if err == nil {
					acked[body] = true
				} else {
					unknown[body] = true // maybe applied; it may appear once
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, func() bool { return count() >= 100 }, "100 acked enqueues")
	old := c.leader()
	c.kill(old)
	before := count()
	waitFor(t, func() bool { return count() >= before+100 }, "100 acked enqueues after the kill")
	close(stop)
	wg.Wait()
	c.start(old) // same data dir

	seen := map[string]int{}
	last := map[string]int{}
	for _, body := range drain(t, c.procs[old], "stream") {
		seen[body]++
		var w, i int
		fmt.Sscanf(body, "w%d-%d", &w, &i)
		if prev, ok := last[fmt.Sprint(w)]; ok && i <= prev {
			t.Errorf("FIFO broken for producer %d: %d after %d", w, i, prev)
		}
		last[fmt.Sprint(w)] = i
	}
	for body := range acked {
		if seen[body] != 1 {
			t.Errorf("acknowledged %s dequeued %d times", body, seen[body])
		}
	}
	for body, n := range seen {
		if !acked[body] && !unknown[body] {
			t.Errorf("unexpected message %s", body)
		}
		if n > 1 {
			t.Errorf("%s dequeued %d times", body, n)
		}
	}
	t.Logf("acked %d, unknown outcome %d, dequeued %d", len(acked), len(unknown), len(seen))
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWholeClusterRestart(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	for i := range 10 {
		mustEnqueue(t, c.procs[i%3], "a", fmt.Sprint("a", i))
	}
	mustEnqueue(t, c.procs[0], "b", "b0")
	if _, _, found, _ := dequeue(c.procs[1], "a"); !found {
		t.Fatal("dequeue before restart found nothing")
	}
	for i := range c.procs {
		c.terminate(i) // SIGTERM: clean exit 0
	}
	for i := range c.procs {
		c.start(i)
	}
	c.leader()
	if d, err := depths(c.procs[2]); err != nil || d["a"] != 9 || d["b"] != 1 {
		t.Fatalf("after restart: %v %v", d, err)
	}
	got := drain(t, c.procs[2], "a")
	if strings.Join(got, ",") != "a1,a2,a3,a4,a5,a6,a7,a8,a9" {
		t.Fatalf("after restart queue a = %v", got)
	}
	// Ids continue where they were: never reused.
	if id := mustEnqueue(t, c.procs[0], "a", "a10"); id != 11 {
		t.Fatalf("id after restart %d, want 11", id)
	}
}

func TestLaggingNodeCatchesUpBySnapshot(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, "--snapshot-count", "20")
	l := c.leader()
	lag := (l + 1) % 3
	c.kill(lag)
	for i := range 200 {
		mustEnqueue(t, c.procs[l], "q", fmt.Sprint(i))
	}
	c.start(lag)
	// A linearizable read on the restarted node returns only once it has
	// applied the leader's commit index, whose log it can no longer get.
	waitFor(t, func() bool { d, err := depths(c.procs[lag]); return err == nil && d["q"] == 200 }, "catch-up")
	logb, _ := os.ReadFile(c.procs[lag].logPath)
	if !strings.Contains(string(logb), "restored snapshot") {
		t.Fatal("lagging node caught up without being sent a snapshot")
	}
	// Lose the leader: the restarted node and the other one hold everything.
	c.kill(l)
	c.leader()
	got := drain(t, c.procs[lag], "q")
	if len(got) != 200 || got[0] != "0" || got[199] != "199" {
		t.Fatalf("drained %d messages: first %v", len(got), got[:min(3, len(got))])
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, "--max-message-bytes", "1048576", "--request-timeout", "1s")
	api := c.procs[0].api
	cases := []struct {
		name, method, path string
		body               io.Reader
		status             int
	}{
		{"bad name", "PUT", "/queues/bad$name", strings.NewReader("x"), 400},
		{"long name", "GET", "/queues/" + strings.Repeat("n", 129), nil, 400},
		{"over limit", "PUT", "/queues/big", bigBody(1<<20 + 1), 413},
		{"over limit, no Content-Length", "PUT", "/queues/big", io.MultiReader(bigBody(1<<20 + 1)), 413},
		{"wrong method", "PATCH", "/queues/q", nil, 405},
		{"unknown path", "GET", "/nothing/here", nil, 404},
	}
	for _, tc := range cases {
		r, err := do(tc.method, api+tc.path, "", tc.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.status != tc.status || !strings.Contains(string(r.body), `"error":`) {
			t.Errorf("%s: %d %s, want %d with a JSON error", tc.name, r.status, r.body, tc.status)
		}
	}
	if d, _ := depths(c.procs[1]); len(d) != 0 {
		t.Fatalf("refused requests stored something: %v", d)
	}
	r, err := do("PUT", api+"/queues/big", "", bigBody(1<<20))
	if err != nil || r.status != http.StatusCreated {
		t.Fatalf("a message of exactly 1 MiB: %d %v", r.status, err)
	}
	body, _, _, err := dequeue(c.procs[2], "big")
	if err != nil || len(body) != 1<<20 {
		t.Fatalf("1 MiB message came back with %d bytes, %v", len(body), err)
	}

	// Without a quorum a write fails with 503 and Retry-After, within the deadline.
	c.kill(1)
	c.kill(2)
	start := time.Now()
	r, err = do("PUT", api+"/queues/q", "", strings.NewReader("no quorum"))
	if err != nil || r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("write without quorum: %d %s %v", r.status, r.body, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("write without quorum took %v with a 1s deadline", took)
	}
	if r, _ := do("GET", api+"/queues", "", nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("read without quorum: %d %s", r.status, r.body)
	}
}

// TestGracefulLeaderStop: SIGTERM on the leader hands leadership over, so
// writes through the other nodes keep succeeding without a 503.
func TestGracefulLeaderStop(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, "--request-timeout", "3s")
	l := c.leader()
	mustEnqueue(t, c.procs[l], "q", "before")
	c.terminate(l)
	for _, i := range []int{(l + 1) % 3, (l + 2) % 3} {
		mustEnqueue(t, c.procs[i], "q", fmt.Sprint("after-", i))
	}
	logb, _ := os.ReadFile(c.procs[l].logPath)
	if !strings.Contains(string(logb), "leadership handed over") {
		t.Fatalf("stopped leader did not hand over leadership")
	}
	c.start(l)
	if got := drain(t, c.procs[l], "q"); len(got) != 3 || got[0] != "before" {
		t.Fatalf("queue after restart: %v", got)
	}
}

// A write forwarded to a leader that then stops answering (SIGSTOP) is
// lost with it. The follower notices the new leader and answers 503
// "unknown" as soon as the new leader's first entries are applied, not
// after the whole request timeout (30s here), so the client can retry.
func TestWriteLostWithOldLeaderFailsFast(t *testing.T) {
	c := startCluster(t, 3, "--request-timeout", "30s")
	// Under load the write can reach the follower only after the election,
	// and then it rightly succeeds: try a few times for one that is caught
	// in flight.
	for attempt := 1; attempt <= 5; attempt++ {
		l := c.leader()
		f := c.procs[(l+1)%3]
		mustEnqueue(t, f, "jobs", "warm-up")
		old := c.procs[l]
		if err := old.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r, err := do(http.MethodPost, f.api+"/queues/jobs", "text/plain", strings.NewReader("lost?"))
		took := time.Since(start)
		old.cmd.Process.Signal(syscall.SIGCONT)
		if err != nil {
			t.Fatal(err)
		}
		if r.status == http.StatusCreated {
			t.Logf("attempt %d: the write got through after the election (%v); again", attempt, took)
			continue
		}
		var body struct{ Error, Outcome string }
		json.Unmarshal(r.body, &body)
		if r.status != http.StatusServiceUnavailable || body.Outcome != "unknown" {
			t.Fatalf("write through a follower of a stopped leader: %d %s, want 503 with outcome unknown", r.status, r.body)
		}
		if took > 15*time.Second {
			t.Fatalf("the 503 came after %v, i.e. at the request timeout, not when the leader changed", took)
		}
		t.Logf("503 after %v: %s", took, body.Error)
		mustEnqueue(t, f, "jobs", "after") // the rest of the cluster goes on
		return
	}
	t.Skip("every write reached its follower only after the election; the machine is too loaded to catch one in flight")
}
