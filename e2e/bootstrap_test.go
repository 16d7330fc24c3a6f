package e2e

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// logHas reports whether node p's log contains s.
func logHas(p *proc, s string) bool {
	b, _ := os.ReadFile(p.logPath)
	return strings.Contains(string(b), s)
}

// panicked reports whether node p's log shows a panic: raft's (logged at
// zap's panic level) or the runtime's.
func panicked(p *proc) bool {
	return logHas(p, "\tpanic\t") || logHas(p, `"level":"panic"`) || logHas(p, "\npanic: ")
}

// The scenario: entry E is committed on A and B while C is down;
// B's disk is replaced; A dies; C comes back, without E; B starts again
// with the same flags. Had B bootstrapped again (empty log, no vote
// record) it would vote for C, and E would be gone though it was
// acknowledged. B must refuse to start, saying why and what to do, and
// once A is back E is there.
func TestWipedMemberRefusesToBootstrapAgain(t *testing.T) {
	c := startCluster(t, 3)
	for _, p := range c.procs { // the peers' record that each member has run
		waitPublished(t, p, 3)
	}
	a := c.leader()
	b, cc := (a+1)%3, (a+2)%3
	mustEnqueue(t, c.procs[a], "q", "before")
	// C is killed, not paused: resumed, it would read E from its socket
	// buffers.
	c.kill(cc)
	mustEnqueue(t, c.procs[a], "q", "E") // committed by A and B only
	c.terminate(b)
	if err := os.RemoveAll(c.procs[b].dataDir); err != nil {
		t.Fatal(err)
	}
	c.kill(a)
	c.start(cc)

	c.spawn(b) // same flags, empty data dir
	if code := waitExit(t, c.procs[b], 60*time.Second); code == 0 {
		t.Fatalf("node %d exited 0", b+1)
	}
	for _, s := range []string{"has already been bootstrapped", "--join"} {
		if !logHas(c.procs[b], s) {
			t.Fatalf("node %d's log does not say %q", b+1, s)
		}
	}
	if entries, _ := os.ReadDir(c.procs[b].dataDir + "/wal"); len(entries) > 0 {
		t.Fatalf("the refused node wrote a WAL: %v", entries)
	}

	c.start(a)
	c.leader()
	if got := drain(t, c.procs[cc], "q"); !slices.Equal(got, []string{"before", "E"}) {
		t.Fatalf("queue holds %q, want before and E", got)
	}
}

// alive fails the test if a node of x or y exited or panicked.
func alive(t *testing.T, x, y *cluster) {
	t.Helper()
	for name, c := range map[string]*cluster{"X": x, "Y": y} {
		for _, p := range c.procs {
			if !p.running() || panicked(p) {
				b, _ := os.ReadFile(p.logPath)
				t.Fatalf("%s's node %d exited or panicked; its log ends:\n%s", name, p.id, tail(b, 2048))
			}
		}
	}
}

// term is the raft term in which node p's cluster commits a write now.
func term(t *testing.T, p *proc) uint64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := do(http.MethodPut, p.api+"/queues/terms", "text/plain", strings.NewReader("t"))
		if err == nil && r.status == http.StatusCreated {
			n, err := strconv.ParseUint(r.header.Get("Raft-Term"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d takes no write: %v %d %s", p.id, err, r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lead moves leadership of c to node id.
func lead(t *testing.T, c *cluster, id int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := mgmt(t, http.MethodPost, c.procs[c.leader()].api+"/mgmt/leader", fmt.Sprintf(`{"id":%d}`, id))
		if r.status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("moving leadership to %d: %d %s", id, r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two clusters, and a node of each given a peer URL of the other: node 3
// of Y restarted with a --cluster that puts X's leader's peer URL where
// Y's node of the same id belongs, and a learner added to X at the peer
// URL of Y's node 1. Every cluster has its own
// id, so each side refuses the other's peer traffic (and says so), both
// clusters go on serving, and nothing panics. With one id for all
// clusters, X's leader streamed its heartbeats (X's term, X's commit
// index) to Y's node 3, which then panicked.
func TestClustersRefuseEachOthersPeers(t *testing.T) {
	x := startCluster(t, 3)
	y := startCluster(t, 3)
	for i := range 30 {
		mustEnqueue(t, x.procs[i%3], "x", fmt.Sprint(i))
	}
	// X's leader, not node 3, in a higher term than Y's: so that, if Y's
	// node 3 were to take X's leader's messages, it would follow them.
	for i := 0; term(t, x.procs[0]) <= term(t, y.procs[0]) || x.leader() == 2; i++ {
		lead(t, x, 1+i%2)
	}
	if y.leader() == 2 {
		lead(t, y, 1) // so that stopping Y's node 3 hands nothing over
	}
	xl := x.procs[x.leader()]

	y.terminate(2)
	urls := strings.Split(y.peers, ",")
	urls[xl.id-1] = xl.peer
	y.peers = strings.Join(urls, ",")
	y.start(2)
	if r := mgmt(t, http.MethodPost, xl.api+"/mgmt/nodes", fmt.Sprintf(`{"id":4,"peer_url":%q,"learner":true}`, y.procs[0].peer)); r.status != http.StatusCreated {
		t.Fatalf("add learner 4 to X: %d %s", r.status, r.body)
	}

	refused := "refusing a peer of another cluster"
	deadline := time.Now().Add(60 * time.Second)
	for !logHas(xl, refused) || !logHas(y.procs[0], refused) || !logHas(y.procs[2], "cluster ID mismatch") {
		alive(t, x, y)
		if time.Now().After(deadline) {
			t.Fatalf("mismatch not logged: X's leader %v, Y's node 1 %v, Y's node 3 %v",
				logHas(xl, refused), logHas(y.procs[0], refused), logHas(y.procs[2], "cluster ID mismatch"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	alive(t, x, y)
	// Both clusters serve through every node given the right peers; Y's
	// node 3, which cannot reach one of them at the URL it was given,
	// still follows Y's log.
	for _, p := range append(append([]*proc(nil), x.procs...), y.procs[:2]...) {
		q := fmt.Sprintf("alive-%d", p.id)
		mustEnqueue(t, p, q, "still here")
		if got := drain(t, p, q); !slices.Equal(got, []string{"still here"}) {
			t.Fatalf("node %d: %q", p.id, got)
		}
	}
	want := applied(y.procs[0])
	deadline = time.Now().Add(60 * time.Second)
	for applied(y.procs[2]) < want {
		alive(t, x, y)
		if time.Now().After(deadline) {
			t.Fatalf("Y's node 3 applied %d, Y's node 1 %d", applied(y.procs[2]), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := drain(t, x.procs[1], "x"); len(got) != 30 {
		t.Fatalf("X holds %d of its 30 messages", len(got))
	}
	alive(t, x, y)
}
