package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// applied reads each running node's applied index from /debug/state.
func (c *cluster) applied() []uint64 {
	c.t.Helper()
	var out []uint64
	for _, p := range c.procs {
		var st struct{ Applied uint64 }
		if status, err := getJSON(p.api+"/debug/state", &st); err != nil || status != http.StatusOK {
			c.t.Fatalf("node %d /debug/state: %d %v", p.id, status, err)
		}
		out = append(out, st.Applied)
	}
	return out
}

// settle waits until every node has applied the same index and it stays
// put for a while (the start's own entries: elections, published URLs).
func (c *cluster) settle() uint64 {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last []uint64
	stable := 0
	for time.Now().Before(deadline) {
		cur := c.applied()
		same := fmt.Sprint(cur) == fmt.Sprint(last)
		for _, a := range cur[1:] {
			same = same && a == cur[0]
		}
		if stable++; !same {
			stable = 0
		}
		if stable >= 10 {
			return cur[0]
		}
		last = cur
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("applied indexes did not settle: %v", last)
	return 0
}

// waitAll runs polls concurrently, one per path (alternating nodes), and
// returns their statuses.
func (c *cluster) waitAll(paths []string) []int {
	statuses := make([]int, len(paths))
	var wg sync.WaitGroup
	for i, path := range paths {
		wg.Go(func() {
			method := http.MethodGet
			if strings.Contains(path, "/leases") {
				method = http.MethodPost
			}
			r, err := do(method, c.procs[i%len(c.procs)].api+path, "", nil)
			if err != nil {
				c.t.Errorf("%s: %v", path, err)
				return
			}
			statuses[i] = r.status
		})
	}
	wg.Wait()
	return statuses
}

// Consumers waiting on empty queues cost nothing: while they wait, the log
// grows by no more than the lease ticks explain (none while no lease or
// delay is pending). Before the fix one idle poll applied thousands of
// entries a second.
func TestIdleLongPollsWriteNothing(t *testing.T) {
	c := startCluster(t, 3)
	mustEnqueue(t, c.procs[0], "used", "x")
	if _, _, found, err := dequeue(c.procs[1], "used"); err != nil || !found {
		t.Fatalf("dequeue: %v %v", found, err)
	}
	idle := []string{
		"/queues/used?wait=3s", "/queues/used/leases?wait=3s", "/queues/never-used?wait=3s",
		"/queues/never-used/leases?wait=3s&ttl=5s", "/queues/used?wait=3s&max=10", "/queues/used/leases?wait=3s",
	}
	before := c.settle()
	for i, s := range c.waitAll(idle) {
		if s != http.StatusNoContent {
			t.Fatalf("%s: status %d", idle[i], s)
		}
	}
	after := c.settle()
	// An election on a loaded machine may add a leader's empty entry.
	if grew := after - before; grew > 3 {
		t.Fatalf("6 consumers waiting 3 s on empty queues applied %d entries (%d -> %d)", grew, before, after)
	}
	t.Logf("idle waits: applied %d -> %d", before, after)

	// With a lease pending elsewhere the leader ticks (every 250 ms) so that
	// it expires: waiters add nothing to that.
	mustEnqueue(t, c.procs[2], "held", "y")
	if r, err := do(http.MethodPost, c.procs[0].api+"/queues/held/leases?ttl=60s", "", nil); err != nil || r.status != http.StatusOK {
		t.Fatalf("lease: %d %v", r.status, err)
	}
	start := c.applied()[0]
	t0 := time.Now()
	for i, s := range c.waitAll(idle) {
		if s != http.StatusNoContent {
			t.Fatalf("%s: status %d", idle[i], s)
		}
	}
	ticks := uint64(time.Since(t0)/(250*time.Millisecond)) + 1
	end := c.applied()[0]
	if grew := end - start; grew > 2*ticks+3 {
		t.Fatalf("waiting beside a pending lease applied %d entries in %v (ticks explain about %d)", grew, time.Since(t0), ticks)
	}
	t.Logf("waits beside a lease: %d entries in %v, ticks explain about %d", end-start, time.Since(t0), ticks)

	// A waiter still wakes on an enqueue through another node.
	got := make(chan response, 1)
	go func() {
		r, _ := do(http.MethodGet, c.procs[0].api+"/queues/wake?wait=20s", "", nil)
		got <- r
	}()
	// Give the waiter time to park; if it is still arriving, it finds the
	// message ready and takes it at once, which passes as well.
	time.Sleep(300 * time.Millisecond)
	sent := time.Now()
	mustEnqueue(t, c.procs[2], "wake", "ring")
	r := <-got
	if r.status != http.StatusOK || string(r.body) != "ring" {
		t.Fatalf("waiter: %d %q", r.status, r.body)
	}
	t.Logf("waiter answered %v after the enqueue through another node was acknowledged", time.Since(sent))
}

// At shutdown a waiting poll is answered 204 at once instead of being cut
// when the server's grace period ends; the node still exits cleanly.
func TestShutdownAnswersLongPolls(t *testing.T) {
	c := startCluster(t, 3)
	mustEnqueue(t, c.procs[0], "q", "kept")
	if _, _, found, err := dequeue(c.procs[0], "q"); err != nil || !found {
		t.Fatalf("dequeue: %v %v", found, err)
	}
	got := make(chan error, 1)
	var status int
	go func() {
		r, err := do(http.MethodGet, c.procs[1].api+"/queues/q?wait=30s", "", nil)
		status = r.status
		got <- err
	}()
	c.settle()
	start := time.Now()
	c.terminate(1)
	if err := <-got; err != nil {
		t.Fatalf("the waiting poll was cut at shutdown: %v", err)
	}
	if status != http.StatusNoContent {
		t.Fatalf("the waiting poll answered %d at shutdown", status)
	}
	t.Logf("answered and stopped %v after SIGTERM", time.Since(start))
	mustEnqueue(t, c.procs[2], "q", "after")
	if body, _, found, err := dequeue(c.procs[0], "q"); err != nil || !found || body != "after" {
		t.Fatalf("after the stop: %q %v %v", body, found, err)
	}
}
