package queuefsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// t0 is a real time (Unix ms) for the simulations below.
const t0 = 1_700_000_000_000

// node is one run of one node: its id, its run's epoch, and how far its
// wall clock is off. Its stamps follow real time (a monotonic clock).
type node struct {
	id     uint64
	epoch  int64
	offset int64
}

func runOf(id uint64, startedAt, offset int64) node {
	return node{id: id, epoch: startedAt + offset, offset: offset}
}

// at applies cmd as proposed by n at real time real.
func (n node) at(c *clockFSM, real int64, cmd Command) any {
	cmd.Proposer, cmd.Epoch = n.id, n.epoch
	return c.at(real+n.offset, cmd)
}

func (n node) tick(c *clockFSM, real int64) { n.at(c, real, Command{Op: OpTick}) }

func (n node) lease(c *clockFSM, real int64, q string, ttl int64) DequeueResult {
	c.t.Helper()
	r, ok := n.at(c, real, Command{Op: OpLease, Queue: q, TTL: ttl}).(DequeueResult)
	if !ok {
		c.t.Fatalf("lease by node %d at %d failed", n.id, real)
	}
	return r
}

// A node whose clock runs ten minutes fast, interleaved with a correct
// one, moves the clock no further than real time.
func TestFastProposerDoesNotDragTheClock(t *testing.T) {
	c := newClock(t)
	good, fast := runOf(1, t0-5000, 0), runOf(3, t0-3000, 10*60*1000)
	good.at(c, t0, Command{Op: OpEnqueue, Queue: "q", Body: []byte("x")})
	if c.f.Now() != t0 {
		t.Fatalf("first stamp set the clock to %d, want %d", c.f.Now(), t0)
	}
	for i := int64(1); i <= 600; i++ {
		real := t0 + i*100
		n := fast
		if i%3 == 0 {
			n = good
		}
		n.at(c, real, Command{Op: OpEnqueue, Queue: "other", Body: []byte("y")})
		if now := c.f.Now(); now > real || now < real-300 {
			t.Fatalf("after %d ms of real time (node %d) the clock moved %d ms", real-t0, n.id, now-t0)
		}
	}
	// The fast node alone still moves the clock, at the pace of real time.
	fast.tick(c, t0+65_000)
	before := c.f.Now()
	fast.tick(c, t0+70_000)
	if moved := c.f.Now() - before; moved != 5000 {
		t.Fatalf("5 s of the fast node's stamps moved the clock %d ms", moved)
	}
}

// A restart reads the wall clock anew: whatever it says, the new run's
// first stamp moves nothing, and its later stamps move the clock by how far
// they advance. A late entry of the previous run moves nothing either.
func TestNewRunMovesNothing(t *testing.T) {
	for _, offset := range []int64{60 * 60 * 1000, -60 * 60 * 1000} {
		t.Run(fmt.Sprint(offset), func(t *testing.T) {
			c := newClock(t)
			first := runOf(2, t0-1000, 0)
			first.tick(c, t0)
			first.tick(c, t0+1000)
			if c.f.Now() != t0+1000 {
				t.Fatalf("now = %d, want %d", c.f.Now(), t0+1000)
			}
			again := runOf(2, t0+5000, offset) // restarted with its clock off
			again.tick(c, t0+5000)
			if c.f.Now() != t0+1000 {
				t.Fatalf("the new run's first stamp moved the clock by %d", c.f.Now()-(t0+1000))
			}
			again.tick(c, t0+5500)
			if c.f.Now() != t0+1500 {
				t.Fatalf("500 ms of the new run moved the clock by %d, want 500", c.f.Now()-(t0+1000))
			}
			first.tick(c, t0+4000) // stamped before the restart, applied after
			again.tick(c, t0+6000) // a new baseline again: no move
			again.tick(c, t0+6200)
			if c.f.Now() != t0+1700 {
				t.Fatalf("now = %d, want %d", c.f.Now(), t0+1700)
			}
		})
	}
}

// Entries of two correct nodes reach the log out of stamp order all the
// time (a forwarded proposal arrives after the leader's own, stamped
// later). That must not make the clock run fast: a run's line on cluster
// time is fixed when the run is first heard from, and not raised each time
// the clock is ahead of it.
func TestReorderedStampsDoNotRunTheClockFast(t *testing.T) {
	c := newClock(t)
	a, b := runOf(1, t0-1000, 0), runOf(2, t0-1000, 0)
	a.tick(c, t0)
	b.tick(c, t0)
	const steps = 2000
	for k := int64(1); k <= steps; k++ {
		real := t0 + k*10
		first, late := a, b
		if k%2 == 1 {
			first, late = b, a
		}
		first.tick(c, real)
		late.tick(c, real-5)  // stamped before the other's, applied after
		first.tick(c, real-3) // and one of first's own, reordered
	}
	if end := int64(t0 + steps*10); c.f.Now() > end || c.f.Now() < end-10 {
		t.Fatalf("after %d ms of real time the clock moved %d ms", end-t0, c.f.Now()-t0)
	}
}

// A lease taken through a correct node and one taken through a node ten
// minutes fast are both held for their ttl while either node's traffic
// goes on, and expire at it.
func TestLeasesHeldForTheirTTL(t *testing.T) {
	c := newClock(t)
	n1, n3 := runOf(1, t0-5000, 0), runOf(3, t0-3000, 10*60*1000)
	n1.at(c, t0, Command{Op: OpEnqueue, Queue: "q", Body: []byte("a")})
	n3.at(c, t0, Command{Op: OpEnqueue, Queue: "other", Body: []byte("b")})
	for round, taker := range []node{n1, n3} {
		start := t0 + int64(round)*10_000
		l := taker.lease(c, start, "q", 3000)
		if !l.Found || l.Expires-l.Now != 3000 || l.Now != c.f.Now() {
			t.Fatalf("round %d: lease = %+v (now %d)", round, l, c.f.Now())
		}
		for ms := int64(100); ms < 3000; ms += 100 {
			n3.at(c, start+ms, Command{Op: OpEnqueue, Queue: "other", Body: []byte("b")})
			if ms%500 == 0 {
				n1.tick(c, start+ms)
			}
			if r := n3.lease(c, start+ms, "q", 3000); r.Found {
				t.Fatalf("round %d: the lease expired after %d ms of its 3000", round, ms)
			}
		}
		n3.tick(c, start+2999)
		if c.info("q").Leased != 1 {
			t.Fatalf("round %d: the lease expired before its ttl", round)
		}
		n1.tick(c, start+3000)
		if qi := c.info("q"); qi.Leased != 0 || qi.Depth != 1 {
			t.Fatalf("round %d: at its ttl the lease still holds: %+v", round, qi)
		}
	}
	// Extend answers carry the clock too.
	l := n3.lease(c, t0+20_000, "q", 1000)
	r, ok := n1.at(c, t0+20_500, Command{Op: OpExtend, Queue: "q", ID: l.Message.ID, Token: l.Token, TTL: 4000}).(LeaseResult)
	if !ok || r.Now != c.f.Now() || r.Expires-r.Now != 4000 {
		t.Fatalf("extend = %+v (now %d)", r, c.f.Now())
	}
}

// encodeV2ForTest writes c in command version 2: version 3 without the
// proposer and epoch after the time.
func encodeV2ForTest(t *testing.T, c Command) []byte {
	t.Helper()
	if c.Proposer != 0 || c.Epoch != 0 {
		t.Fatal("version 2 has no proposer")
	}
	b := c.encodeIn(commandV3)
	r := &reader{b: b[2:]}
	r.varint()
	n := len(b) - 2 - len(r.b) // the time's bytes
	if b[2+n] != 0 || b[3+n] != 0 {
		t.Fatalf("no zero proposer and epoch after the time in % x", b)
	}
	return append(append([]byte{commandV2, b[1]}, b[2:2+n]...), b[4+n:]...)
}

// The encoding of version 3, and commands of versions 1 and 2 still read
// and applied as they were: no proposer, the clock moved to their stamp
// by MaxClockStep at most.
func TestOldCommandVersions(t *testing.T) {
	v3 := Command{Op: OpLease, Time: 5, Proposer: 3, Epoch: 7, Queue: "q", TTL: 9}
	if got, want := v3.Encode(), []byte{3, byte(OpLease), 10, 3, 14, 1, 'q', 18}; !bytes.Equal(got, want) {
		t.Fatalf("version 3 encoding % x, want % x", got, want)
	}
	if got, err := DecodeCommand(v3.Encode()); err != nil || !reflect.DeepEqual(got, v3) {
		t.Fatalf("decode = %+v %v", got, err)
	}
	v2lease := []byte{commandV2, byte(OpLease), 10, 1, 'q', 18}
	if got := encodeV2ForTest(t, Command{Op: OpLease, Time: 5, Queue: "q", TTL: 9}); !bytes.Equal(got, v2lease) {
		t.Fatalf("encodeV2ForTest wrote % x, want % x", got, v2lease)
	}
	if got, err := DecodeCommand(v2lease); err != nil || !reflect.DeepEqual(got, Command{Op: OpLease, Time: 5, Queue: "q", TTL: 9}) {
		t.Fatalf("version 2 decoded as %+v %v", got, err)
	}
	if q, tick := QueueOf(v2lease); q != "q" || tick {
		t.Fatalf("QueueOf(v2 lease) = %q %v", q, tick)
	}
	if q, tick := QueueOf(encodeV2ForTest(t, Command{Op: OpTick, Time: 5})); q != "" || !tick {
		t.Fatalf("QueueOf(v2 tick) = %q %v", q, tick)
	}
	if q, tick := QueueOf(v3.Encode()); q != "q" || tick {
		t.Fatalf("QueueOf(v3 lease) = %q %v", q, tick)
	}

	f := New()
	apply := func(i uint64, cmd []byte) any { return f.Apply(i, cmd) }
	apply(1, encodeV1ForTest("old", "x")) // no time
	apply(2, encodeV2ForTest(t, Command{Op: OpEnqueue, Time: t0, Queue: "q", Body: []byte("dot")}))
	if f.Now() != t0 || f.Queues()[1].Name != "q" {
		t.Fatalf("now %d, queues %+v", f.Now(), f.Queues())
	}
	apply(3, encodeV2ForTest(t, Command{Op: OpTick, Time: t0 + 10*60*1000}))
	if f.Now() != t0+MaxClockStep {
		t.Fatalf("a version 2 stamp 10 minutes ahead moved the clock to %d, want %d", f.Now(), t0+MaxClockStep)
	}
	r, ok := apply(4, encodeV2ForTest(t, Command{Op: OpLease, Time: t0, Queue: "q", TTL: 1000})).(DequeueResult)
	if !ok || r.Message.Body != "dot" || r.Now != t0+MaxClockStep || r.Expires != r.Now+1000 {
		t.Fatalf("version 2 lease = %+v", r)
	}
	apply(5, Command{Op: OpTick, Time: t0, Proposer: 1}.Encode())
	// A proposer over the bound is refused.
	if r := apply(6, Command{Op: OpTick, Time: t0, Proposer: MaxProposer + 1}.Encode()); !errIs(r, ErrBadCommand) {
		t.Fatalf("proposer %d = %v", MaxProposer+1, r)
	}
	if len(f.clocks) != 1 || f.clocks[0].id != 1 {
		t.Fatalf("clocks = %+v", f.clocks)
	}
}

// sim is a few nodes that restart (with their clocks off), propose
// concurrently (stamps reordered) and enqueue, lease, ack and tick.
type sim struct {
	rng    *rand.Rand
	runs   []node
	real   int64
	tokens []DequeueResult
}

func newSim(seed uint64) *sim {
	return &sim{rng: rand.New(rand.NewPCG(seed, seed)), real: t0,
		runs: []node{runOf(1, t0, 0), runOf(2, t0, 0), runOf(3, t0, 7000)}}
}

// ops applies the same n commands to every FSM given and returns each
// result and clock reading, FSM by FSM.
func (s *sim) ops(n int, fsms ...*clockFSM) [][]any {
	results := make([][]any, len(fsms))
	for range n {
		s.real += s.rng.Int64N(200)
		i := s.rng.IntN(len(s.runs))
		if s.rng.IntN(50) == 0 {
			s.runs[i] = runOf(s.runs[i].id, s.real, s.rng.Int64N(3_600_000)-1_800_000)
		}
		stamp := s.real - s.rng.Int64N(20) // in flight a while
		var cmd Command
		switch k := s.rng.IntN(6); {
		case k == 0:
			cmd = Command{Op: OpTick}
		case k == 1:
			cmd = Command{Op: OpLease, Queue: "q", TTL: s.rng.Int64N(3000)}
		case k == 2 && len(s.tokens) > 0:
			l := s.tokens[s.rng.IntN(len(s.tokens))]
			cmd = Command{Op: OpAck, Queue: "q", ID: l.Message.ID, Token: l.Token}
		default:
			cmd = Command{Op: OpEnqueue, Queue: "q", Delay: s.rng.Int64N(500), Body: []byte(fmt.Sprint(s.real))}
		}
		for j, c := range fsms {
			r := s.runs[i].at(c, stamp, cmd)
			results[j] = append(results[j], r, c.f.Now())
			if l, ok := r.(DequeueResult); ok && l.Found && j == 0 {
				s.tokens = append(s.tokens, l)
			}
		}
	}
	return results
}

// Replicas that apply the same commands agree on every result and every
// clock reading, and their snapshots are equal byte for byte; a replica
// restored from a snapshot (the proposers' clocks included) goes on exactly
// like one that applied the log.
func TestProposerClocksAreReplicated(t *testing.T) {
	a, b := newClock(t), newClock(t)
	s := newSim(1)
	if r := s.ops(3000, a, b); !reflect.DeepEqual(r[0], r[1]) {
		t.Fatal("replicas disagree")
	}
	sa, _ := a.f.Snapshot()
	sb, _ := b.f.Snapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatal("snapshots of equal histories differ")
	}
	if len(a.f.clocks) != 3 {
		t.Fatalf("clocks = %+v", a.f.clocks)
	}
	r := newClock(t)
	r.index = a.index
	if err := r.f.Restore(sa); err != nil {
		t.Fatal(err)
	}
	if again, _ := r.f.Snapshot(); !bytes.Equal(again, sa) {
		t.Fatal("the restored state encodes differently")
	}
	if res := s.ops(2000, a, r); !reflect.DeepEqual(res[0], res[1]) {
		t.Fatal("the restored replica diverged from the original")
	}
	sa, _ = a.f.Snapshot()
	if sr, _ := r.f.Snapshot(); !bytes.Equal(sa, sr) {
		t.Fatal("snapshots differ after the same commands")
	}
}

// A snapshot of version 2 (no proposers) is still restored; the bytes of a
// version 3 one name proposers in ascending order, each once, in range.
func TestSnapshotVersions(t *testing.T) {
	v2 := []byte{snapshotV2, 0xd0, 0x0f, // now 1000
		1, 1, 'q', 1, 0, 0, // queue q: last id 1, no limit, no dead letters
		1, 1, 0, 1, 'x', 0, 0, 0, 0, 0, // message 1 "x", ready
		0} // no keys
	f := New()
	if err := f.Restore(v2); err != nil {
		t.Fatal(err)
	}
	if r := dequeue(t, f, "q"); f.Now() != 1000 || r.Message.Body != "x" || len(f.clocks) != 0 {
		t.Fatalf("from version 2: now %d, %+v, clocks %+v", f.Now(), r, f.clocks)
	}
	f.Apply(2, Command{Op: OpTick, Time: 5000, Proposer: 2, Epoch: 1}.Encode())
	f.Apply(3, Command{Op: OpTick, Time: 5500, Proposer: 1, Epoch: 1}.Encode())
	if f.Now() != 1000 {
		t.Fatalf("new proposers moved the clock to %d", f.Now())
	}
	snap, _ := f.Snapshot()
	want := []byte{snapshotVersion, 0xd0, 0x0f, 2,
		1, 2, 0xf8, 0x55, 0xd0, 0x0f, // proposer 1: epoch 1, stamp 5500, at 1000
		2, 2, 0x90, 0x4e, 0xd0, 0x0f} // proposer 2: epoch 1, stamp 5000, at 1000
	if !bytes.HasPrefix(snap, want) {
		t.Fatalf("snapshot % x, want it to begin % x", snap, want)
	}
	rest := snap[len(want):]
	for name, clocks := range map[string][]byte{
		"unsorted":  {2, 2, 0, 0, 0, 1, 0, 0, 0},
		"twice":     {2, 1, 0, 0, 0, 1, 0, 0, 0},
		"zero":      {1, 0, 0, 0, 0},
		"too big":   {1, 0x80, 0x80, 0x04, 0, 0, 0},
		"too many":  {0x80, 0x80, 0x04},
		"truncated": {1, 1, 0},
	} {
		data := append(append([]byte{snapshotVersion, 0xd0, 0x0f}, clocks...), rest...)
		if err := New().Restore(data); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: err = %v, want ErrBadSnapshot", name, err)
		}
	}
}

// A capture writes the proposers' clocks as they were when taken.
func TestCaptureKeepsProposerClocks(t *testing.T) {
	c := newClock(t)
	s := newSim(3)
	s.ops(500, c)
	want, _ := c.f.Snapshot()
	write := c.f.Capture()
	s.ops(500, c)
	var got bytes.Buffer
	if err := write(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("the capture wrote clocks changed after it was taken")
	}
}
