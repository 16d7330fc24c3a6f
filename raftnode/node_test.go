package raftnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/raftq/raftq/queuefsm"
	"github.com/raftq/raftq/raftnode"
	"github.com/raftq/raftq/wal"
)

// testLogger writes errors to stderr, shown by go test only on failure.
var testLogger = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
	zapcore.Lock(os.Stderr), zap.ErrorLevel))

// member is one in-process node: a real WAL in a temp dir, real rafthttp
// on a loopback listener.
type member struct {
	id     uint64
	node   *raftnode.Node
	fsm    *queuefsm.FSM
	store  *wal.Store
	cancel context.CancelFunc
	done   chan error
	srv    *http.Server
}

type cluster struct {
	t         *testing.T
	urls      []string
	addrs     []string
	dirs      []string
	snapshot  uint64
	snapBytes uint64 // SnapshotBytes; 0: count only
	publish   bool   // nodes publish an API URL (http://api-<id>)
	late      []int  // indexes of nodes newCluster does not start
	members   []*member
}

func newCluster(t *testing.T, size int, snapshotCount uint64) *cluster {
	return newClusterWith(t, size, func(c *cluster) { c.snapshot = snapshotCount })
}

func newClusterWith(t *testing.T, size int, set func(*cluster)) *cluster {
	c := &cluster{t: t, members: make([]*member, size)}
	set(c)
	for range size {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.addrs = append(c.addrs, l.Addr().String())
		c.urls = append(c.urls, "http://"+l.Addr().String())
		c.dirs = append(c.dirs, t.TempDir())
		l.Close() // reopened by start; the port stays ours in practice on loopback
	}
	for i := range size {
		if !slices.Contains(c.late, i) {
			c.start(i)
		}
	}
	t.Cleanup(func() {
		for i := range c.members {
			c.stop(i)
		}
	})
	return c
}

func (c *cluster) start(i int) {
	t := c.t
	id := uint64(i + 1)
	store, err := wal.Open(zap.NewNop(), c.dirs[i], id, func() (uint64, error) { return raftnode.ClusterIDFor("test", c.urls), nil })
	if err != nil {
		t.Fatalf("node %d: %v", id, err)
	}
	fsm := queuefsm.New()
	cfg := raftnode.Config{
		ID: id, Peers: c.urls, SnapshotCount: c.snapshot, SnapshotBytes: c.snapBytes,
		TickInterval: 10 * time.Millisecond, ElectionTicks: 10,
		// Not zaptest: rafthttp's handler goroutines may log after a test ends.
		Logger: testLogger.Named(fmt.Sprint("n", id)),
	}
	if c.publish {
		cfg.APIURL = fmt.Sprintf("http://api-%d", id)
	}
	node, err := raftnode.New(cfg, store, fsm)
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	deadline := time.Now().Add(5 * time.Second)
	for l, err = net.Listen("tcp", c.addrs[i]); err != nil; l, err = net.Listen("tcp", c.addrs[i]) {
		if time.Now().After(deadline) {
			t.Fatalf("node %d: listen: %v", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv := &http.Server{Handler: node.PeerHandler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{id: id, node: node, fsm: fsm, store: store, cancel: cancel, done: make(chan error, 1), srv: srv}
	go func() { m.done <- node.Run(ctx) }()
	go node.PublishAPIURL(ctx)
	c.members[i] = m
}

func (c *cluster) stop(i int) {
	m := c.members[i]
	if m == nil {
		return
	}
	m.cancel()
	if err := <-m.done; err != nil {
		c.t.Errorf("node %d stopped with %v", m.id, err)
	}
	m.srv.Close()
	m.store.Close()
	c.members[i] = nil
}

func (c *cluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, m := range c.members {
			if m != nil && m.node.Status().Leader == m.id {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected")
	return -1
}

var enqueues atomic.Uint64

// enqueue stores body in q with an idempotency key of its own, retrying
// while no leader takes it or a leader change leaves its outcome unknown
// (a busy machine can change leaders at any time): the key makes a retry
// of an applied enqueue answer the first one's id.
func enqueue(t *testing.T, n *raftnode.Node, q, body string) uint64 {
	t.Helper()
	key := fmt.Sprint("k", enqueues.Add(1)) // one per call: its retries share it
	cmd := queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: q, IdempotencyKey: key, Body: []byte(body)}.Encode()
	a, err := propose(n, cmd, true)
	if err != nil {
		t.Fatalf("enqueue %q: %v", body, err)
	}
	return a.Result.(queuefsm.EnqueueResult).ID
}

// dequeue pops the head of q, retrying only while no leader took the pop
// (a pop whose outcome is unknown may have taken a message).
func dequeue(t *testing.T, n *raftnode.Node, q string) queuefsm.DequeueResult {
	t.Helper()
	a, err := propose(n, queuefsm.EncodeDequeue(q), false)
	if err != nil {
		t.Fatalf("dequeue: %v", err)
	}
	return a.Result.(queuefsm.DequeueResult)
}

// propose proposes cmd until it is applied or 30 s pass, again after
// ErrNoLeader, and after an unknown outcome too when idempotent.
func propose(n *raftnode.Node, cmd []byte, idempotent bool) (raftnode.Applied, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		a, err := n.Propose(ctx, cmd)
		cancel()
		retry := errors.Is(err, raftnode.ErrNoLeader) || idempotent && (errors.Is(err, raftnode.ErrLeaderChanged) || errors.Is(err, raftnode.ErrTimeout))
		if err == nil || !retry || time.Now().After(deadline) {
			return a, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// converged waits until every running node has applied the same index and
// holds byte-identical state.
func (c *cluster) converged() {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var snaps [][]byte
		var applied []uint64
		for _, m := range c.members {
			if m == nil {
				continue
			}
			if err := m.node.ReadBarrier(context.Background()); err != nil {
				c.t.Fatal(err)
			}
			m.node.View(func() {
				b, _ := m.fsm.Snapshot()
				snaps = append(snaps, b)
			})
			applied = append(applied, m.node.Status().Applied)
		}
		same := true
		for i := range snaps {
			same = same && bytes.Equal(snaps[i], snaps[0]) && applied[i] == applied[0]
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replicas did not converge: applied %v", applied)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProposeFromEveryNodeIsFIFOAndReplicated(t *testing.T) {
	c := newCluster(t, 3, 1000)
	c.leader()
	for i := range 30 {
		m := c.members[i%3]
		if id := enqueue(t, m.node, "jobs", fmt.Sprint(i)); id != uint64(i+1) {
			t.Fatalf("enqueue %d on node %d got id %d", i, m.id, id)
		}
	}
	for i := range 30 {
		r := dequeue(t, c.members[(i+1)%3].node, "jobs")
		if !r.Found || string(r.Message.Body) != fmt.Sprint(i) {
			t.Fatalf("dequeue %d: %+v", i, r)
		}
	}
	c.converged()
	if st := c.members[0].node.Status(); len(st.Members) != 3 || st.Members[2].PeerURLs[0] != c.urls[2] {
		t.Fatalf("members %+v", st.Members)
	}
}

func TestLeaderLossAndRestart(t *testing.T) {
	c := newCluster(t, 3, 1000)
	l := c.leader()
	for i := range 10 {
		enqueue(t, c.members[l].node, "q", fmt.Sprint(i))
	}
	c.stop(l)
	// A proposal forwarded to the dead leader before the others notice
	// would be lost with an unknown outcome; wait for the new leader.
	other := c.leader()
	for i := 10; i < 20; i++ {
		enqueue(t, c.members[other].node, "q", fmt.Sprint(i))
	}
	c.start(l) // same data dir
	c.converged()
	for i := range 20 {
		if r := dequeue(t, c.members[l].node, "q"); string(r.Message.Body) != fmt.Sprint(i) {
			t.Fatalf("message %d: %+v", i, r)
		}
	}
}

func TestLaggingNodeCatchesUpBySnapshot(t *testing.T) {
	c := newCluster(t, 3, 20)
	l := c.leader()
	lag := (l + 1) % 3
	c.stop(lag)
	for i := range 200 {
		enqueue(t, c.members[l].node, "q", fmt.Sprint(i))
	}
	first, _ := c.members[l].store.Storage().FirstIndex()
	if first < 100 {
		t.Fatalf("leader log not compacted: first index %d", first)
	}
	c.start(lag)
	c.converged()
	if snap := c.members[lag].store.Snapshot(); snap != nil {
		t.Fatalf("lagging node booted from its own snapshot at %d; the test needs it empty", snap.GetMetadata().GetIndex())
	}
	// The restarted node could only have caught up by being sent a snapshot.
	if got := c.members[lag].node.Status().Applied; got < first {
		t.Fatalf("lagging node applied %d < leader's first index %d", got, first)
	}
}

// Large entries trigger snapshots by their bytes long before the count, so
// the log held in memory stays small, and fewer entries are kept behind.
func TestSnapshotBytesBoundTheLogInMemory(t *testing.T) {
	c := newClusterWith(t, 3, func(c *cluster) { c.snapshot, c.snapBytes = 100000, 64<<10 })
	l := c.leader()
	body := strings.Repeat("x", 4<<10)
	for range 100 {
		enqueue(t, c.members[l].node, "q", body)
	}
	mem := c.members[l].store.Storage()
	first, _ := mem.FirstIndex()
	last, _ := mem.LastIndex()
	// 64 KiB of 4 KiB entries: a snapshot every 16 entries, a quarter of
	// that, 4 entries, kept behind it.
	if first < 80 || last-first > 40 {
		t.Fatalf("in-memory log holds %d..%d: not bounded by bytes", first, last)
	}
	if snap := c.members[l].store.Snapshot(); snap == nil && first < 2 {
		t.Fatal("no snapshot taken")
	}
}

func TestNoQuorumFailsWithinDeadline(t *testing.T) {
	c := newCluster(t, 3, 1000)
	l := c.leader()
	enqueue(t, c.members[l].node, "q", "before")
	c.stop((l + 1) % 3)
	c.stop((l + 2) % 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.members[l].node.Propose(ctx, queuefsm.EncodeEnqueue("q", "", []byte("lost")))
	if !errors.Is(err, raftnode.ErrTimeout) && !errors.Is(err, raftnode.ErrNoLeader) {
		t.Fatalf("propose without quorum: %v", err)
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Fatalf("propose hung for %v past its 1s deadline", waited)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer rcancel()
	if err := c.members[l].node.ReadBarrier(rctx); !errors.Is(err, raftnode.ErrReadTimeout) {
		t.Fatalf("read barrier without quorum: %v", err)
	}
}

func TestStoppingLeaderHandsOver(t *testing.T) {
	c := newCluster(t, 3, 1000)
	l := c.leader()
	enqueue(t, c.members[l].node, "q", "before")
	c.stop(l) // returns once another node leads
	for i, m := range c.members {
		if m == nil {
			continue
		}
		if lead := m.node.Status().Leader; lead == uint64(l+1) {
			t.Fatalf("node %d still follows the stopped leader %d", i+1, lead)
		}
	}
	// Without the handover a proposal forwarded to the stopped leader is lost
	// and times out; with it, the next write succeeds at once.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.members[(l+1)%3].node.Propose(ctx, queuefsm.EncodeEnqueue("q", "", []byte("after"))); err != nil {
		t.Fatalf("write right after the leader stopped: %v", err)
	}
}
