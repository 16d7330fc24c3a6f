package queuefsm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// at applies c at time ms with a fresh index and returns the result.
type clockFSM struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func newClock(t *testing.T) *clockFSM { return &clockFSM{t: t, f: New()} }

func (c *clockFSM) at(ms int64, cmd Command) any {
	c.index++
	cmd.Time = ms
	return c.f.Apply(c.index<<SeqPosBits, cmd.Encode()) // as raftnode numbers an entry of one
}

func (c *clockFSM) put(ms int64, q, body string) uint64 {
	c.t.Helper()
	r, ok := c.at(ms, Command{Op: OpEnqueue, Queue: q, Body: []byte(body)}).(EnqueueResult)
	if !ok {
		c.t.Fatal("enqueue failed")
	}
	return r.ID
}

func (c *clockFSM) lease(ms int64, q string, ttl int64) DequeueResult {
	c.t.Helper()
	res := c.at(ms, Command{Op: OpLease, Queue: q, TTL: ttl})
	r, ok := res.(DequeueResult)
	if !ok {
		c.t.Fatalf("lease: %v", res)
	}
	return r
}

func (c *clockFSM) info(q string) QueueInfo {
	for _, qi := range c.f.Queues() {
		if qi.Name == q {
			return qi
		}
	}
	return QueueInfo{}
}

func TestLeaseAndAck(t *testing.T) {
	c := newClock(t)
	c.put(1000, "q", "a")
	c.put(1000, "q", "b")
	a := c.lease(1000, "q", 30000)
	if !a.Found || string(a.Message.Body) != "a" || a.Message.Deliveries != 1 || a.Token == "" || a.Expires != 31000 {
		t.Fatalf("lease = %+v", a)
	}
	if b := c.lease(1001, "q", 30000); string(b.Message.Body) != "b" || b.Token == a.Token {
		t.Fatalf("second lease = %+v", b)
	}
	if qi := c.info("q"); qi.Depth != 0 || qi.Leased != 2 {
		t.Fatalf("info %+v", qi)
	}
	if r := c.at(1002, Command{Op: OpAck, Queue: "q", ID: a.Message.ID, Token: a.Token}); r != (Done{}) {
		t.Fatalf("ack = %v", r)
	}
	if r := c.at(1003, Command{Op: OpAck, Queue: "q", ID: a.Message.ID, Token: a.Token}); !errIs(r, ErrNoMessage) {
		t.Fatalf("second ack = %v, want ErrNoMessage", r)
	}
	if r := c.at(1003, Command{Op: OpAck, Queue: "nope", ID: 1, Token: "x"}); !errIs(r, ErrNoMessage) {
		t.Fatalf("ack in an unknown queue = %v", r)
	}
	if qi := c.info("q"); qi.Leased != 1 {
		t.Fatalf("info after ack %+v", qi)
	}
}

func errIs(r any, target error) bool {
	err, ok := r.(error)
	return ok && errors.Is(err, target)
}

// An expired lease puts the message back in its original place, with its
// delivery count kept; the old token no longer works.
func TestExpiredLeaseRedeliversInOrder(t *testing.T) {
	c := newClock(t)
	for _, b := range []string{"a", "b", "c"} {
		c.put(1000, "q", b)
	}
	a := c.lease(1000, "q", 1000)
	c.lease(1000, "q", 60000) // b
	if r := c.at(2000, Command{Op: OpTick}); r != (Done{}) {
		t.Fatalf("tick = %v", r)
	}
	if qi := c.info("q"); qi.Depth != 2 || qi.Leased != 1 {
		t.Fatalf("after expiry %+v", qi)
	}
	again := c.lease(2000, "q", 1000)
	if string(again.Message.Body) != "a" || again.Message.Deliveries != 2 {
		t.Fatalf("redelivery = %+v, want a with Deliveries 2 (before c)", again)
	}
	if r := c.at(2001, Command{Op: OpAck, Queue: "q", ID: a.Message.ID, Token: a.Token}); !errIs(r, ErrLeaseLost) {
		t.Fatalf("ack with the expired token = %v, want ErrLeaseLost", r)
	}
	// Expiry also happens on the queue's own next command, without a tick.
	if r := c.lease(3500, "q", 1000); string(r.Message.Body) != "a" || r.Message.Deliveries != 3 {
		t.Fatalf("lease after an untold expiry = %+v", r)
	}
}

func TestReleaseAndExtend(t *testing.T) {
	c := newClock(t)
	c.put(0+1, "q", "a")
	c.put(1, "q", "b")
	a := c.lease(1, "q", 1000)
	if r := c.at(2, Command{Op: OpRelease, Queue: "q", ID: a.Message.ID, Token: a.Token}); r != (Done{}) {
		t.Fatalf("release = %v", r)
	}
	a = c.lease(3, "q", 1000)
	if string(a.Message.Body) != "a" || a.Message.Deliveries != 2 {
		t.Fatalf("after release: %+v", a)
	}
	c.at(4, Command{Op: OpRelease, Queue: "q", ID: a.Message.ID, Token: a.Token, Delay: 5000})
	if qi := c.info("q"); qi.Delayed != 1 || qi.Depth != 1 {
		t.Fatalf("released with delay: %+v", qi)
	}
	b := c.lease(5, "q", 1000)
	if string(b.Message.Body) != "b" {
		t.Fatalf("while a is delayed: %+v", b)
	}
	// Extend b's lease past its first expiry.
	r, ok := c.at(900, Command{Op: OpExtend, Queue: "q", ID: b.Message.ID, Token: b.Token, TTL: 2000}).(LeaseResult)
	if !ok || r.Expires != 2900 {
		t.Fatalf("extend = %+v", r)
	}
	if got := c.lease(1500, "q", 1000); got.Found {
		t.Fatalf("b expired despite the extension, or a came early: %+v", got)
	}
	if got := c.lease(5004, "q", 1000); string(got.Message.Body) != "a" {
		t.Fatalf("after the delay: %+v", got)
	}
}

func TestDeadLetters(t *testing.T) {
	c := newClock(t)
	if r := c.at(1, Command{Op: OpConfigure, Queue: "jobs", MaxDeliveries: 2, DeadLetterQueue: "jobs.dlq"}); r != (Done{}) {
		t.Fatalf("configure = %v", r)
	}
	if r := c.at(1, Command{Op: OpConfigure, Queue: "x", DeadLetterQueue: "x"}); !errIs(r, ErrInvalidArg) {
		t.Fatalf("own DLQ = %v", r)
	}
	id := c.put(1, "jobs", "poison")
	c.put(1, "jobs", "fine")
	for i := range 2 {
		if r := c.lease(int64(10+i*1000), "jobs", 100); r.Message.ID != id {
			t.Fatalf("delivery %d: %+v", i+1, r)
		}
	}
	// The third lease finds poison delivered twice: it goes to the DLQ.
	if r := c.lease(5000, "jobs", 100); string(r.Message.Body) != "fine" {
		t.Fatalf("after max deliveries: %+v", r)
	}
	d := c.lease(5000, "jobs.dlq", 100)
	if string(d.Message.Body) != "poison" || d.Message.Origin == nil ||
		*d.Message.Origin != (Origin{Queue: "jobs", ID: id, Deliveries: 2}) {
		t.Fatalf("dead letter = %+v origin %+v", d, d.Message.Origin)
	}
}

func TestIdempotentEnqueue(t *testing.T) {
	c := newClock(t)
	put := func(ms int64, key, body string) any {
		return c.at(ms, Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: key, Body: []byte(body)})
	}
	first := put(1000, "k1", "x").(EnqueueResult)
	if r := put(2000, "k1", "x"); r != (EnqueueResult{ID: first.ID, Replay: true}) {
		t.Fatalf("replay = %v", r)
	}
	if qi := c.info("q"); qi.Depth != 1 {
		t.Fatalf("a replay stored something: %+v", qi)
	}
	if r := put(2000, "k1", "y"); !errIs(r, ErrKeyReused) {
		t.Fatalf("same key, other body = %v", r)
	}
	if r := put(2000, "bad\nkey", "x"); !errIs(r, ErrInvalidArg) {
		t.Fatalf("non-printable key = %v", r)
	}
	// After the window the key is forgotten (the clock moves at most
	// MaxClockStep per entry, as ticks would move it).
	for ms := int64(2000); ms < 1000+DedupeWindow; ms += MaxClockStep {
		c.at(ms, Command{Op: OpTick})
	}
	if r := put(1000+DedupeWindow, "k1", "x").(EnqueueResult); r.Replay || r.ID == first.ID {
		t.Fatalf("after the window = %+v", r)
	}
}

func TestDelayedEnqueueAndClock(t *testing.T) {
	c := newClock(t)
	c.at(10000, Command{Op: OpEnqueue, Queue: "q", Delay: 30000, Body: []byte("later")})
	if at, ok := c.f.NextDeadline(); !ok || at != 40000 || c.info("q").Delayed != 1 {
		t.Fatalf("delayed message not pending: %+v", c.info("q"))
	}
	if r := c.lease(20000, "q", 1000); r.Found {
		t.Fatalf("leased a delayed message early: %+v", r)
	}
	// Time never goes back: an old timestamp does not undo the clock.
	c.at(5000, Command{Op: OpTick})
	if c.f.Now() != 20000 {
		t.Fatalf("clock went back to %d", c.f.Now())
	}
	// A far-future timestamp moves the clock by MaxClockStep at most.
	c.at(20000+10*MaxClockStep, Command{Op: OpTick})
	if c.f.Now() != 20000+MaxClockStep {
		t.Fatalf("clock = %d, want clamped to %d", c.f.Now(), 20000+MaxClockStep)
	}
	if r := c.lease(c.f.Now(), "q", 1000); string(r.Message.Body) != "later" {
		t.Fatalf("after the delay: %+v", r)
	}
}

// A replica restored from a snapshot behaves exactly like the one that
// applied the log, stale timers and heap layout notwithstanding.
func TestSnapshotKeepsLeaseState(t *testing.T) {
	a := newClock(t)
	a.at(1, Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 3, DeadLetterQueue: "dlq"})
	for i := range 20 {
		a.at(int64(i), Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: fmt.Sprint("k", i%7), Body: []byte(fmt.Sprint(i)), Delay: int64(i%3) * 500})
	}
	var tokens []DequeueResult
	for i := range 6 {
		tokens = append(tokens, a.lease(int64(100+i), "q", int64(200+i*300)))
	}
	a.at(150, Command{Op: OpExtend, Queue: "q", ID: tokens[0].Message.ID, Token: tokens[0].Token, TTL: 5000})
	a.at(160, Command{Op: OpRelease, Queue: "q", ID: tokens[1].Message.ID, Token: tokens[1].Token, Delay: 700})
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b := newClock(t)
	b.index = a.index
	if err := b.f.Restore(snap); err != nil {
		t.Fatal(err)
	}
	// A token handed out before the snapshot still holds its lease after.
	ack := Command{Op: OpAck, Queue: "q", ID: tokens[2].Message.ID, Token: tokens[2].Token}
	if ra, rb := a.at(165, ack), b.at(165, ack); !tokens[2].Found || ra != (Done{}) || rb != (Done{}) {
		t.Fatalf("ack with a token from before the snapshot: %v, restored %v", ra, rb)
	}
	for step := range 60 {
		ms := int64(170 + step*97)
		var cmd Command
		switch step % 4 {
		case 0:
			cmd = Command{Op: OpLease, Queue: "q", TTL: 250}
		case 1:
			cmd = Command{Op: OpTick}
		case 2:
			cmd = Command{Op: OpDequeue, Queue: "dlq"}
		default:
			cmd = Command{Op: OpEnqueue, Queue: "q", Body: []byte(fmt.Sprint("n", step))}
		}
		ra, rb := a.at(ms, cmd), b.at(ms, cmd)
		if !reflect.DeepEqual(ra, rb) {
			t.Fatalf("step %d: applied %+v, restored %+v", step, ra, rb)
		}
	}
	sa, _ := a.f.Snapshot()
	sb, _ := b.f.Snapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatal("snapshots differ after the same commands")
	}
}

// A capture writes the state as it was when taken, whatever is applied
// between the capture and the write: leases, extends, releases, expiries,
// acks, pops, dead letters and new messages all change records the view
// holds unless they are copied first.
func TestCaptureIsUnaffectedByLaterCommands(t *testing.T) {
	a := newClock(t)
	a.at(1, Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 2, DeadLetterQueue: "dlq"})
	for i := range 30 {
		a.at(int64(i), Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: fmt.Sprint("k", i), Body: []byte(fmt.Sprint(i)), Delay: int64(i%4) * 400})
	}
	var leases []DequeueResult
	for i := range 8 {
		leases = append(leases, a.lease(int64(100+i), "q", 300))
	}
	want, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	write := a.f.Capture()
	a.at(120, Command{Op: OpExtend, Queue: "q", ID: leases[0].Message.ID, Token: leases[0].Token, TTL: 5000})
	a.at(121, Command{Op: OpRelease, Queue: "q", ID: leases[1].Message.ID, Token: leases[1].Token, Delay: 50})
	a.at(122, Command{Op: OpAck, Queue: "q", ID: leases[2].Message.ID, Token: leases[2].Token})
	for step := range 40 {
		ms := int64(200 + step*150)
		switch step % 4 {
		case 0:
			a.lease(ms, "q", 200)
		case 1:
			a.at(ms, Command{Op: OpTick})
		case 2:
			a.at(ms, Command{Op: OpDequeue, Queue: "q"})
		default:
			a.at(ms, Command{Op: OpEnqueue, Queue: "q", Body: []byte(fmt.Sprint("n", step))})
		}
	}
	var got bytes.Buffer
	if err := write(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("the capture wrote a state changed after it was taken")
	}
	now, _ := a.f.Snapshot()
	if bytes.Equal(now, want) {
		t.Fatal("the commands after the capture changed nothing: the test proves nothing")
	}
}

// A lease token names one lease of one message: another message's token,
// a made-up one or a mangled one does not hold it.
func TestForeignTokensDoNotHoldALease(t *testing.T) {
	c := newClock(t)
	c.put(1000, "q", "a")
	c.put(1000, "q", "b")
	a, b := c.lease(1000, "q", 30000), c.lease(1000, "q", 30000)
	for _, tok := range []string{b.Token, "", "x", ".", a.Token + "0", "0." + a.Token, strings.ToUpper(a.Token) + "!"} {
		if r := c.at(1001, Command{Op: OpAck, Queue: "q", ID: a.Message.ID, Token: tok}); !errIs(r, ErrLeaseLost) {
			t.Errorf("ack of %d with token %q = %v, want ErrLeaseLost", a.Message.ID, tok, r)
		}
	}
	if r := c.at(1002, Command{Op: OpAck, Queue: "q", ID: a.Message.ID, Token: a.Token}); r != (Done{}) {
		t.Fatalf("ack with its own token = %v", r)
	}
}

// A queue holds a million records: each must stay in the 64-byte size
// class (see msg).
func TestMessageRecordIs64Bytes(t *testing.T) {
	if size := unsafe.Sizeof(msg{}); size > 64 {
		t.Fatalf("msg is %d bytes, over 64", size)
	}
}

// A lease token names its command's entry index and, for a command after
// the first of a group, its position: "index.id" or "index-pos.id", in
// base 36. A token from before groups reads as position 0.
func TestLeaseTokenSeq(t *testing.T) {
	for _, c := range []struct {
		seq   uint64
		token string
	}{
		{7 << SeqPosBits, "7.z"},
		{7<<SeqPosBits | 1, "7-1.z"},
		{36<<SeqPosBits | 36, "10-10.z"},
	} {
		m := &msg{id: 35, state: stateLeased, lease: c.seq}
		if got := m.token(); got != c.token {
			t.Errorf("seq %#x: token %q, want %q", c.seq, got, c.token)
		}
		if lease, id, ok := parseToken(c.token); !ok || lease != c.seq || id != 35 {
			t.Errorf("%q: parsed %#x %d %v", c.token, lease, id, ok)
		}
	}
	for _, bad := range []string{"7-0.z", "7-.z", "7-1ekg.z", "-1.z", "zzzzzzzzzzzzz.z", "7-1-1.z", "7"} {
		if _, _, ok := parseToken(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
