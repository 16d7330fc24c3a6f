package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// fakeLeader serves GET /debug/state for node 1 as answer says, given how
// many polls came before.
func fakeLeader(t *testing.T, answer func(poll int, w http.ResponseWriter)) (*nemesis, string) {
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(int(polls.Add(1)-1), w)
	}))
	t.Cleanup(srv.Close)
	logPath := filepath.Join(t.TempDir(), "node-1.log")
	if err := os.WriteFile(logPath, []byte("3 stepped down to follower since quorum is not active\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{cfg: ClusterConfig{Tick: 10 * time.Millisecond, ElectionTicks: 10}, Net: NewNet(1), lg: zap.NewNop(),
		nodes: []*Node{{ID: 1, API: srv.URL, LogPath: logPath}}}
	return &nemesis{c: c, lg: zap.NewNop(), stats: &Stats{Faults: map[string]int{}}, stepDown: 600 * time.Millisecond}, logPath
}

func state(w http.ResponseWriter, leader uint64) {
	json.NewEncoder(w).Encode(LocalState{ID: 1, Leader: leader})
}

func leads(_ int, w http.ResponseWriter) { state(w, 1) }

// The step-down check convicts only on an answer: "I lead" to a poll sent
// late in the wait. Slow answers, no answers and errors leave it undecided;
// a "follower" answer or the node's own log line of the step-down, written
// after the cut, end it.
func TestCheckStepsDown(t *testing.T) {
	cases := []struct {
		name    string
		answer  func(poll int, w http.ResponseWriter)
		logLine bool // the step-down is logged after the cut
		fails   bool
	}{
		{name: "leads throughout", fails: true, answer: leads},
		{name: "steps down after slow answers", answer: func(poll int, w http.ResponseWriter) {
			if poll < 2 {
				time.Sleep(200 * time.Millisecond)
				state(w, 1)
				return
			}
			state(w, 0)
		}},
		{name: "answers only early, slowly", answer: func(poll int, w http.ResponseWriter) {
			time.Sleep(time.Second)
			state(w, 1)
		}},
		{name: "stops answering", answer: func(poll int, w http.ResponseWriter) {
			if poll < 3 {
				state(w, 1)
				return
			}
			http.Error(w, "busy", http.StatusInternalServerError)
		}},
		{name: "logs its step-down", logLine: true, answer: leads},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, logPath := fakeLeader(t, c.answer)
			logFrom := fileSize(logPath) // the line already there predates the cut
			if c.logLine {
				go func() {
					time.Sleep(100 * time.Millisecond)
					f, _ := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
					f.WriteString("warn raft.go:1283 1 " + stepDownLog + "\n")
					f.Close()
				}()
			}
			n.checkStepsDown(context.Background(), 1, logFrom)
			if got := len(n.stats.Problems) > 0; got != c.fails {
				t.Fatalf("problems %q, want a problem: %v", n.stats.Problems, c.fails)
			}
		})
	}
}

// cutter ends a run at a chosen log line: a hook on the harness's logger
// cancels the run as the line is logged, so a fault is cut short at a
// chosen step, deterministically.
type cutter struct {
	mu     sync.Mutex
	at     string
	cancel context.CancelFunc
	cut    bool
}

func (c *cutter) arm(at string, cancel context.CancelFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.cancel, c.cut = at, cancel, false
}

func (c *cutter) hook(e zapcore.Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil && e.Message == c.at {
		c.cancel()
		c.cancel, c.cut = nil, true
	}
	return nil
}

func (c *cutter) done() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}

// A fault that the end of the run cuts short is seen through and undone
// before inject returns, so healing never meets it halfway. Each case ends
// the run (traffic and nemesis) at one step of one fault; the cluster must
// then be whole at once — every member running and resumed, no failpoint
// armed, the network healthy, no damaged data dir left — and heal and
// converge. (Before the fix, a corrupt-wal fault cut short after its kill
// returned with the bit still flipped: the node refused to start and the
// run reported "nodes did not converge".)
func TestFaultCutShortIsUndone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster; skipped with -short")
	}
	cut := &cutter{}
	lg := testLogger().WithOptions(zap.Hooks(cut.hook))
	ctx := context.Background()
	c, err := StartCluster(ctx, ClusterConfig{Binary: raftqBin, Dir: t.TempDir(), Seed: 1, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := NewHistory()
	cases := []struct{ fault, at string }{
		{KillLeader, "node killed"}, {KillFollower, "node killed"},
		{PauseLeader, "node signalled"}, {PauseFollower, "node signalled"},
		{IsolateLeader, "isolated"}, {IsolateNode, "isolated"},
		{PartitionHalf, "partitioned"}, {OneWay, "one-way cut"}, {SlowLink, "slow links"},
		{CrashPoint, "node started"}, // with its failpoint armed
		{TornTail, "node killed"},
		{CorruptWAL, "node killed"}, {CorruptWAL, "flipped a bit"}, {CorruptWAL, "node started"},
		{CorruptSnap, "flipped a bit"},
		{Membership, "member added"}, {Membership, "member removed"},
	}
	for i, tc := range cases {
		run, cancel := context.WithCancel(ctx)
		n := &nemesis{c: c, h: h, rng: rand.New(rand.NewPCG(uint64(i), 7)), lg: lg, hold: 2 * time.Second,
			stats: &Stats{Faults: map[string]int{}}, ended: run.Done(), stepDown: stepDownWait(c.Config().ElectionTimeout())}
		traffic := make(chan struct{})
		go func() { Workload{Seed: uint64(i)}.Run(run, c, h); close(traffic) }()
		grows(t, c, 120) // entries, and snapshots, to damage
		cut.arm(tc.at, cancel)
		err := n.inject(run, tc.fault)
		cancel()
		<-traffic
		if !cut.done() {
			t.Fatalf("%s: the run never reached %q", tc.fault, tc.at)
		}
		if err != nil {
			t.Fatalf("%s cut at %q: %v", tc.fault, tc.at, err)
		}
		if p := n.stats.Problems; len(p) > 0 {
			t.Fatalf("%s cut at %q: problems %q", tc.fault, tc.at, p)
		}
		if bad := broken(c); len(bad) > 0 {
			t.Fatalf("%s cut at %q: inject returned with the cluster not whole: %s", tc.fault, tc.at, strings.Join(bad, "; "))
		}
		if err := c.HealAll(ctx); err != nil {
			t.Fatalf("%s cut at %q: heal: %v", tc.fault, tc.at, err)
		}
		if _, err := c.WaitConverged(ctx, convergeTimeout); err != nil {
			t.Fatalf("%s cut at %q: %v", tc.fault, tc.at, err)
		}
		t.Logf("%s cut at %q: undone before healing", tc.fault, tc.at)
	}
}

// grows waits until the leader applied k more entries.
func grows(t *testing.T, c *Cluster, k uint64) {
	var from uint64
	deadline := time.Now().Add(convergeTimeout)
	for time.Now().Before(deadline) {
		if l := c.Leader(context.Background()); l != 0 {
			if st, err := c.State(context.Background(), l); err == nil {
				if from == 0 {
					from = st.Applied
				}
				if st.Applied >= from+k {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the leader did not apply %d entries in %v", k, convergeTimeout)
}

// broken lists what is left of a fault in c: members not running, paused
// or with a failpoint armed, unhealthy links, data dirs set aside.
func broken(c *Cluster) []string {
	var out []string
	for _, n := range c.Members() {
		n.mu.Lock()
		switch {
		case !n.alive():
			out = append(out, fmt.Sprintf("node %d not running", n.ID))
		case n.paused:
			out = append(out, fmt.Sprintf("node %d paused", n.ID))
		case slices.ContainsFunc(n.cmd.Env, func(e string) bool { return strings.HasPrefix(e, "RAFTQ_FAILPOINTS=") }):
			out = append(out, fmt.Sprintf("node %d has a failpoint armed", n.ID))
		}
		n.mu.Unlock()
		if m := mustGlob(filepath.Join(n.DataDir, "*.bak")); len(m) > 0 {
			out = append(out, "damaged data left: "+strings.Join(m, ","))
		}
	}
	c.Net.mu.Lock()
	if len(c.Net.links) > 0 {
		out = append(out, "links still faulty")
	}
	c.Net.mu.Unlock()
	return out
}
