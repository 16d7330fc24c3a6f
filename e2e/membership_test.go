package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func mgmt(t *testing.T, method, url, body string) response {
	t.Helper()
	r, err := do(method, url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func nodesOf(t *testing.T, p *proc) nodesView {
	t.Helper()
	var v nodesView
	if status, err := getJSON(p.api+"/mgmt/nodes", &v); status != http.StatusOK {
		t.Fatalf("GET /mgmt/nodes on node %d: %d %v", p.id, status, err)
	}
	return v
}

// waitExit waits for a node to exit by itself and returns its status.
func waitExit(t *testing.T, p *proc, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("node %d still running after %v", p.id, within)
		return -1
	}
}

// load enqueues unique messages through the given nodes and pops some of
// them, until stop is closed. It records what was acknowledged and what
// came out, and how many pops had an unknown outcome.
type load struct {
	mu          sync.Mutex
	acked       map[string]bool
	popped      map[string]int
	unknownPops int
	targets     func() []*proc
}

func (l *load) run(stop <-chan struct{}, wg *sync.WaitGroup, producer int) {
	defer wg.Done()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		ts := l.targets()
		p := ts[rand.IntN(len(ts))]
		v := fmt.Sprintf("p%d-%d", producer, i)
		if _, err := enqueue(p, "work", v); err == nil {
			l.mu.Lock()
			l.acked[v] = true
			l.mu.Unlock()
		}
		if i%2 == 0 {
			body, _, found, err := dequeue(p, "work")
			l.mu.Lock()
			switch {
			case err != nil:
				l.unknownPops++
			case found:
				l.popped[body]++
			}
			l.mu.Unlock()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Grow 3 → 4 → 5 (the fifth as a learner, then promoted) under load, move
// leadership, shrink back to 3 by removing the leader and a follower:
// removed nodes exit 0, and every acknowledged message comes out once.
func TestMembershipGrowAndShrink(t *testing.T) {
	c := startCluster(t, 3, "--snapshot-count", "50")
	var mu sync.Mutex
	voters := []*proc{c.procs[0], c.procs[1], c.procs[2]}
	l := &load{acked: map[string]bool{}, popped: map[string]int{}, targets: func() []*proc {
		mu.Lock()
		defer mu.Unlock()
		return append([]*proc(nil), voters...)
	}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go l.run(stop, &wg, i)
	}
	stopLoad := func() {
		if stop != nil {
			close(stop)
			wg.Wait()
			stop = nil
		}
	}
	t.Cleanup(stopLoad)
	time.Sleep(500 * time.Millisecond) // let the log grow past a snapshot

	// Node 4 joins as a voter and catches up (by snapshot: the log is compacted).
	p4 := c.newProc(4)
	if r := mgmt(t, http.MethodPost, c.procs[0].api+"/mgmt/nodes", fmt.Sprintf(`{"id":4,"peer_url":%q}`, p4.peer)); r.status != http.StatusCreated {
		t.Fatalf("add node 4: %d %s", r.status, r.body)
	}
	c.start(3)
	waitFor(t, func() bool { return applied(p4) > 0 && applied(p4) >= applied(c.procs[0])-20 }, "node 4 to catch up")
	if b, _ := os.ReadFile(p4.logPath); !strings.Contains(string(b), "restored snapshot") {
		t.Error("node 4 joined after compaction without receiving a snapshot")
	}
	mu.Lock()
	voters = append(voters, p4)
	mu.Unlock()

	// Node 5 joins as a learner, then is promoted.
	p5 := c.newProc(5)
	if r := mgmt(t, http.MethodPost, p4.api+"/mgmt/nodes", fmt.Sprintf(`{"id":5,"peer_url":%q,"learner":true}`, p5.peer)); r.status != http.StatusCreated || !strings.Contains(string(r.body), `"learner":true`) {
		t.Fatalf("add learner 5: %d %s", r.status, r.body)
	}
	c.start(4)
	waitFor(t, func() bool {
		r := mgmt(t, http.MethodPost, c.procs[1].api+"/mgmt/nodes/5/promote", "")
		return r.status == http.StatusOK
	}, "node 5 to be promoted")
	waitPublished(t, p5, 5)
	for _, n := range nodesOf(t, p5).Nodes {
		if n.Learner {
			t.Errorf("member %d is still a learner", n.ID)
		}
	}
	mu.Lock()
	voters = append(voters, p5)
	mu.Unlock()

	// Leadership to node 4, then remove it (the leader) and node 2.
	if r := mgmt(t, http.MethodPost, c.procs[0].api+"/mgmt/leader", `{"id":4}`); r.status != http.StatusOK {
		t.Fatalf("transfer to 4: %d %s", r.status, r.body)
	}
	if v := nodesOf(t, c.procs[2]); v.Leader != 4 {
		t.Fatalf("leader after transfer: %d", v.Leader)
	}
	mu.Lock()
	voters = []*proc{c.procs[0], c.procs[2], p5}
	mu.Unlock()
	for _, id := range []int{4, 2} {
		r := mgmt(t, http.MethodDelete, fmt.Sprintf("%s/mgmt/nodes/%d", c.procs[0].api, id), "")
		if r.status != http.StatusOK {
			t.Fatalf("remove node %d: %d %s", id, r.status, r.body)
		}
		p := c.procs[id-1]
		if code := waitExit(t, p, 15*time.Second); code != 0 {
			t.Fatalf("removed node %d exited with %d", id, code)
		}
		if b, _ := os.ReadFile(p.logPath); !strings.Contains(string(b), "no longer a member") {
			t.Errorf("removed node %d did not say why it exited", id)
		}
	}
	if v := nodesOf(t, c.procs[0]); len(v.Nodes) != 3 || v.Leader == 0 || v.Leader == 4 || v.Leader == 2 {
		t.Fatalf("after shrinking: %+v", v)
	}
	stopLoad()

	// Every acknowledged message comes out exactly once.
	for _, b := range drain(t, c.procs[2], "work") {
		l.popped[b]++
	}
	missing := 0
	for v := range l.acked {
		if l.popped[v] == 0 {
			missing++
		}
	}
	for v, n := range l.popped {
		if n > 1 {
			t.Errorf("%s delivered %d times", v, n)
		}
	}
	if missing > l.unknownPops {
		t.Errorf("%d acknowledged messages never came out; only %d pops had an unknown outcome", missing, l.unknownPops)
	}
	t.Logf("%d acknowledged, %d missing (≤ %d unknown pops)", len(l.acked), missing, l.unknownPops)
}

func applied(p *proc) uint64 {
	var st struct{ Applied uint64 }
	getJSON(p.api+"/debug/state", &st)
	return st.Applied
}

// A learner receives the log but counts in no quorum.
func TestLearnerIsNotInQuorum(t *testing.T) {
	c := startCluster(t, 3, "--request-timeout", "2s")
	p4 := c.newProc(4)
	if r := mgmt(t, http.MethodPost, c.procs[0].api+"/mgmt/nodes", fmt.Sprintf(`{"id":4,"peer_url":%q,"learner":true}`, p4.peer)); r.status != http.StatusCreated {
		t.Fatalf("add learner: %d %s", r.status, r.body)
	}
	c.start(3)
	mustEnqueue(t, c.procs[0], "q", "before")
	waitFor(t, func() bool { return applied(p4) >= applied(c.procs[0]) }, "the learner to catch up")
	c.kill(1)
	c.kill(2)
	if _, err := enqueue(c.procs[0], "q", "no quorum"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("write with 1 voter and a learner up: %v, want a 503", err)
	}
}

// waitPublished waits until every member's API URL is known.
func waitPublished(t *testing.T, p *proc, members int) {
	waitFor(t, func() bool {
		v := nodesOf(t, p)
		for _, n := range v.Nodes {
			if n.APIURL == "" {
				return false
			}
		}
		return len(v.Nodes) == members
	}, "every API URL to be published")
}

func TestMembershipErrors(t *testing.T) {
	c := startCluster(t, 3)
	api := c.procs[0].api
	waitPublished(t, c.procs[1], 3)
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{http.MethodPost, "/mgmt/nodes", `{"id":2,"peer_url":"http://127.0.0.1:1"}`, http.StatusConflict},
		{http.MethodPost, "/mgmt/nodes", fmt.Sprintf(`{"id":9,"peer_url":%q}`, c.procs[1].peer), http.StatusConflict},
		{http.MethodPost, "/mgmt/nodes", `{"id":"x","peer_url":"http://127.0.0.1:1"}`, http.StatusBadRequest},
		{http.MethodPost, "/mgmt/nodes", `{"id":0,"peer_url":"http://127.0.0.1:1"}`, http.StatusBadRequest},
		{http.MethodPost, "/mgmt/nodes", `not json`, http.StatusBadRequest},
		{http.MethodDelete, "/mgmt/nodes/9", "", http.StatusNotFound},
		{http.MethodDelete, "/mgmt/nodes/zero", "", http.StatusBadRequest},
		{http.MethodPost, "/mgmt/nodes/9/promote", "", http.StatusNotFound},
		{http.MethodPost, "/mgmt/nodes/2/promote", "", http.StatusConflict},
		{http.MethodPost, "/mgmt/leader", `{"id":9}`, http.StatusNotFound},
	} {
		r := mgmt(t, tc.method, api+tc.path, tc.body)
		var e struct{ Error string }
		if r.status != tc.status || json.Unmarshal(r.body, &e) != nil || e.Error == "" {
			t.Errorf("%s %s %s: %d %s, want %d with a JSON error", tc.method, tc.path, tc.body, r.status, r.body, tc.status)
		}
	}

	// A learner that never started cannot be promoted nor lead; it can be
	// removed.
	if r := mgmt(t, http.MethodPost, api+"/mgmt/nodes", `{"id":8,"peer_url":"http://127.0.0.1:1","learner":true}`); r.status != http.StatusCreated {
		t.Fatalf("add learner 8: %d %s", r.status, r.body)
	}
	if r := mgmt(t, http.MethodPost, c.procs[1].api+"/mgmt/nodes/8/promote", ""); r.status != http.StatusConflict {
		t.Errorf("promoting a learner that is not connected: %d %s, want 409", r.status, r.body)
	}
	if r := mgmt(t, http.MethodPost, api+"/mgmt/leader", `{"id":8}`); r.status != http.StatusConflict {
		t.Errorf("leadership to a learner: %d %s, want 409", r.status, r.body)
	}
	if r := mgmt(t, http.MethodDelete, api+"/mgmt/nodes/8", ""); r.status != http.StatusOK {
		t.Errorf("removing a learner: %d %s", r.status, r.body)
	}

	// Remove node 3: it exits 0; its id cannot come back, and its old data
	// dir refuses to start.
	if r := mgmt(t, http.MethodDelete, api+"/mgmt/nodes/3", ""); r.status != http.StatusOK {
		t.Fatalf("remove 3: %d %s", r.status, r.body)
	}
	if code := waitExit(t, c.procs[2], 15*time.Second); code != 0 {
		t.Fatalf("removed node exited %d", code)
	}
	if r := mgmt(t, http.MethodPost, api+"/mgmt/nodes", `{"id":3,"peer_url":"http://127.0.0.1:1"}`); r.status != http.StatusConflict {
		t.Errorf("re-adding a removed id: %d %s", r.status, r.body)
	}
	c.spawn(2)
	if code := waitExit(t, c.procs[2], 15*time.Second); code != 0 {
		t.Errorf("restarted removed node exited %d", code)
	}
	if b, _ := os.ReadFile(c.procs[2].logPath); strings.Count(string(b), "no longer a member") != 2 {
		t.Errorf("the removed node's restart did not say why it stopped")
	}
	mustEnqueue(t, c.procs[0], "q", "still fine")

	// With node 2 down, the remaining voter alone has no quorum: a change
	// is refused (503, not applied) and nothing changes.
	c.kill(1)
	if r := mgmt(t, http.MethodPost, api+"/mgmt/leader", `{"id":2}`); r.status != http.StatusServiceUnavailable {
		t.Errorf("leadership to a stopped node: %d %s, want 503 at once", r.status, r.body)
	}
	r := mgmt(t, http.MethodPost, api+"/mgmt/nodes", `{"id":7,"peer_url":"http://127.0.0.1:1"}`)
	var e struct{ Outcome string }
	json.Unmarshal(r.body, &e)
	if r.status != http.StatusServiceUnavailable || e.Outcome != "not_applied" {
		t.Errorf("add without quorum: %d %s, want 503 not_applied", r.status, r.body)
	}
	c.start(1)
	waitFor(t, func() bool { _, err := enqueue(c.procs[0], "q", "quorum is back"); return err == nil }, "quorum")
	if v := nodesOf(t, c.procs[0]); len(v.Nodes) != 2 {
		t.Errorf("members after a refused change: %+v", v)
	}
}

func TestRemovingTheLastVoterIsRefused(t *testing.T) {
	c := startCluster(t, 1)
	if r := mgmt(t, http.MethodDelete, c.procs[0].api+"/mgmt/nodes/1", ""); r.status != http.StatusConflict {
		t.Fatalf("removing the only voter: %d %s, want 409", r.status, r.body)
	}
}
