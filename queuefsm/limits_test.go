package queuefsm

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// mustApply applies cmd at 1000 (or its time) and fails on an error.
func (c *clockFSM) must(cmd Command) any {
	c.t.Helper()
	r := applyAt(c, cmd)
	if err, ok := r.(error); ok {
		c.t.Fatalf("%v on %s: %v", cmd.Op, cmd.Queue, err)
	}
	return r
}

func limitErr(t *testing.T, r any) *LimitError {
	t.Helper()
	var le *LimitError
	if err, ok := r.(error); !ok || !errors.As(err, &le) {
		t.Fatalf("got %v, want a *LimitError", r)
	}
	return le
}

func batchOf(q string, n int, body string) Command {
	items := make([]BatchItem, n)
	for i := range items {
		items[i] = BatchItem{Body: body}
	}
	return Command{Op: OpBatch, Queue: q, Items: items}
}

// The limit itself is reached, one more is refused with the limit named,
// and a batch that would cross it is refused whole and stores nothing
// (not even an id).
func TestLimitBoundaries(t *testing.T) {
	one := MessageCost("", 1)
	for _, tc := range []struct {
		name   string
		setup  []Command
		queue  string
		room   int // messages of 1 byte that fit
		want   LimitError
		target error
	}{
		{name: "queue max_messages", setup: []Command{{Op: OpConfigure, Queue: "q", MaxMessages: 3}}, queue: "q", room: 3,
			want: LimitError{Limit: "max_messages", Queue: "q", Value: 3, Usage: 3, Request: 1}, target: ErrQueueFull},
		{name: "queue max_bytes", setup: []Command{{Op: OpConfigure, Queue: "q", MaxBytes: 3 * one}}, queue: "q", room: 3,
			want: LimitError{Limit: "max_bytes", Queue: "q", Value: 3 * one, Usage: 3 * one, Request: one}, target: ErrQueueFull},
		{name: "cluster max_bytes", setup: []Command{{Op: OpSetLimits, MaxBytes: 4 * one}, put("other", "x")}, queue: "q", room: 3,
			want: LimitError{Limit: "max_bytes", Value: 4 * one, Usage: 4 * one, Request: one}, target: ErrClusterFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t)
			for _, s := range tc.setup {
				c.must(s)
			}
			if r := c.at(1000, batchOf(tc.queue, tc.room+1, "x")); !errIs(r, tc.target) {
				t.Fatalf("a batch of %d over a room of %d = %v", tc.room+1, tc.room, r)
			}
			c.must(batchOf(tc.queue, tc.room-1, "x"))
			if r := c.at(1000, batchOf(tc.queue, 2, "x")); !errIs(r, tc.target) {
				t.Fatalf("a batch crossing the limit = %v", r)
			}
			if r := c.must(put(tc.queue, "x")).(EnqueueResult); r.ID != uint64(tc.room) {
				t.Fatalf("the message that reaches the limit got id %d, want %d (a refused batch took ids)", r.ID, tc.room)
			}
			r := c.at(1000, put(tc.queue, "x"))
			if le := limitErr(t, r); *le != tc.want || !errors.Is(le, tc.target) {
				t.Fatalf("one more = %+v, want %+v (%v)", le, tc.want, tc.target)
			}
			if s, _ := c.f.Stats(tc.queue); s.Depth != tc.room || s.Totals.Enqueued != uint64(tc.room) {
				t.Fatalf("stored %+v, want %d", s, tc.room)
			}
			// Room comes back when a message leaves.
			c.must(Command{Op: OpDequeue, Queue: tc.queue})
			c.must(put(tc.queue, "x"))
			checkCounts(t, c.f)
		})
	}
}

// A keyed enqueue is admitted with its key counted.
func TestKeyCountsAgainstTheLimit(t *testing.T) {
	cost := MessageCost("", 1) + KeyCost("key")
	for _, room := range []int64{cost - 1, cost} {
		c := newClock(t)
		c.must(Command{Op: OpConfigure, Queue: "q", MaxBytes: room})
		r := c.at(1000, Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "key", Body: []byte("x")})
		if ok := !errIs(r, ErrQueueFull); ok != (room == cost) {
			t.Fatalf("room %d for a cost of %d: %v", room, cost, r)
		}
	}
}

// max_queues refuses to make a queue by enqueue, batch or configure; a
// write into an existing queue, or a delete, is unaffected; deleting makes
// room.
func TestMaxQueues(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpSetLimits, MaxQueues: 2, MaxBytes: 1 << 20})
	c.must(put("a", "x"))
	c.must(put("b", "x"))
	want := LimitError{Limit: "max_queues", Value: 2, Usage: 2, Request: 1}
	for _, cmd := range []Command{put("c", "x"), batchOf("c", 1, "x"), {Op: OpConfigure, Queue: "c"}} {
		if le := limitErr(t, c.at(1000, cmd)); *le != want || !errors.Is(le, ErrClusterFull) {
			t.Fatalf("%v making a third queue = %+v", cmd.Op, le)
		}
	}
	if le := limitErr(t, c.at(1000, Command{Op: OpConfigure, Queue: "a", DeadLetterQueue: "d"})); le.Limit != "max_queues" || le.Request != 1 {
		t.Fatalf("configure naming a new dead-letter queue = %+v", le)
	}
	c.must(put("a", "y"))
	c.must(Command{Op: OpDeleteQueue, Queue: "b"})
	c.must(put("c", "x"))
	if n := len(c.f.Queues()); n != 2 {
		t.Fatalf("%d queues", n)
	}
}

// Dead-lettering never refuses: into a dead-letter queue past its own
// limits, and making it again (with no config) past max_queues after it
// was deleted. The cluster's bytes do not change, the queues' do.
func TestDeadLettersPassLimits(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 1, DeadLetterQueue: "d"})
	c.must(Command{Op: OpConfigure, Queue: "d", MaxMessages: 1})
	c.must(put("d", "x"))
	// move puts one message in q, delivers it once, and has a pop find it
	// due to be dead-lettered.
	move := func(body string) {
		t.Helper()
		c.must(Command{Op: OpAlarm, Node: 1})
		c.must(put("q", body))
		l := c.lease(1000, "q", 10)
		c.must(Command{Op: OpRelease, Queue: "q", ID: l.Message.ID, Token: l.Token})
		c.must(Command{Op: OpAlarm, Node: 1, Raise: true})
		before := c.f.Limits().Bytes
		if r := c.must(Command{Op: OpDequeue, Queue: "q"}).(DequeueResult); r.Found {
			t.Fatalf("a message delivered max_deliveries times was popped: %+v", r)
		}
		if c.f.Limits().Bytes != before {
			t.Fatalf("a move changed the cluster's bytes from %d to %d", before, c.f.Limits().Bytes)
		}
		if s, _ := c.f.Stats("q"); s.Bytes != 0 {
			t.Fatalf("the source after a move: %+v", s)
		}
	}
	c.must(Command{Op: OpSetLimits, Fields: FieldMaxQueues, MaxQueues: 2})
	move("xx")
	if s, _ := c.f.Stats("d"); s.Depth != 2 || s.Config.MaxMessages != 1 || s.Bytes != MessageCost("", 1)+MessageCost("", 2) {
		t.Fatalf("the dead-letter queue past its limit: %+v", s)
	}
	if s, _ := c.f.Stats("q"); s.Totals.DeadLettered != 1 {
		t.Fatalf("the source's totals: %+v", s.Totals)
	}
	c.must(Command{Op: OpDeleteQueue, Queue: "d"})
	c.must(Command{Op: OpSetLimits, Fields: FieldMaxQueues, MaxQueues: 1})
	move("yyy") // makes d again, past max_queues 1
	s, err := c.f.Stats("d")
	if l := c.f.Limits(); err != nil || s.Depth != 1 || s.Config != (QueueConfig{Created: 1000, Modified: 1000}) || l.Queues != 2 {
		t.Fatalf("dead-letter queue made again: %+v %v, limits %+v", s, err, l)
	}
	checkCounts(t, c.f)
}

// An idempotent replay of a stored message answers its id at every
// limit, alarms included: the key is looked at first.
func TestReplaysAtTheLimit(t *testing.T) {
	keyed := Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "k", Body: []byte("x")}
	for name, limit := range map[string]Command{
		"queue":    {Op: OpConfigure, Queue: "q", MaxMessages: 1},
		"cluster":  {Op: OpSetLimits, MaxBytes: 1},
		"queues":   {Op: OpSetLimits, MaxQueues: 1},
		"no space": {Op: OpAlarm, Node: 1, Raise: true},
	} {
		c := newClock(t)
		first := c.must(keyed).(EnqueueResult)
		c.must(limit)
		if r := c.at(1000, keyed); r != (EnqueueResult{ID: first.ID, Replay: true}) {
			t.Errorf("%s: replay = %v", name, r)
		}
		if r := c.at(1000, Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "other", Body: []byte("x")}); !errIs(r, ErrQueueFull) && !errIs(r, ErrClusterFull) && !errIs(r, ErrNoSpace) && name != "queues" {
			t.Errorf("%s: a new key = %v", name, r)
		}
	}
}

// At any limit, with every alarm raised and limits set below the usage, a
// full cluster drains: pops, leases, extends, releases, acks, purges,
// deletes and configures of existing queues all pass, and every message
// comes out.
func TestDrainingAtTheLimit(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpConfigure, Queue: "a", MaxMessages: 40})
	for _, q := range []string{"a", "b", "c"} {
		c.must(batchOf(q, 40, "body"))
	}
	c.must(Command{Op: OpSetLimits, MaxQueues: 1, MaxBytes: 1})
	c.must(Command{Op: OpAlarm, Node: 3, Raise: true})
	if r := c.at(1000, put("a", "x")); !errIs(r, ErrNoSpace) {
		t.Fatalf("enqueue = %v", r)
	}
	c.must(Command{Op: OpConfigure, Queue: "a", MaxDeliveries: 5})
	got := 0
	for range 20 {
		l := c.lease(1000, "a", 100)
		c.must(Command{Op: OpExtend, Queue: "a", ID: l.Message.ID, Token: l.Token, TTL: 200})
		if l.Message.Deliveries == 1 && l.Message.ID%2 == 0 {
			c.must(Command{Op: OpRelease, Queue: "a", ID: l.Message.ID, Token: l.Token})
			continue
		}
		c.must(Command{Op: OpAck, Queue: "a", ID: l.Message.ID, Token: l.Token})
		got++
	}
	got += len(c.must(Command{Op: OpPopMany, Queue: "a", Max: 100}).(PopManyResult).Messages)
	for c.must(Command{Op: OpDequeue, Queue: "b"}).(DequeueResult).Found {
		got++
	}
	if r := c.must(Command{Op: OpPurge, Queue: "c"}).(PurgeResult); r.Dropped != 40 {
		t.Fatalf("purge = %+v", r)
	}
	c.must(Command{Op: OpDeleteQueue, Queue: "c"})
	if l := c.f.Limits(); got != 80 || l.Bytes != 0 || l.Queues != 2 {
		t.Fatalf("drained %d of 80; limits %+v", got, l)
	}
	checkCounts(t, c.f)
}

// While any alarm is raised, enqueues and batches are refused with the
// nodes named; clearing the last lets them in.
func TestAlarmsRefuseWrites(t *testing.T) {
	c := newClock(t)
	c.must(put("q", "x"))
	c.must(Command{Op: OpAlarm, Node: 3, Raise: true})
	c.must(Command{Op: OpAlarm, Node: 2, Raise: true})
	for _, cmd := range []Command{put("q", "y"), batchOf("q", 1, "y"), put("new", "y")} {
		r := c.at(1000, cmd)
		var ns *NoSpaceError
		if err, _ := r.(error); !errors.As(err, &ns) || !reflect.DeepEqual(ns.Nodes, []uint64{2, 3}) || !errors.Is(err, ErrNoSpace) {
			t.Fatalf("%v while nodes 2 and 3 are out of space = %v", cmd.Op, r)
		}
		if got := fmt.Sprint(r); got != "queuefsm: no space: disk alarm raised by node 2, 3" {
			t.Fatalf("error %q", got)
		}
	}
	c.must(Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 2})
	c.must(Command{Op: OpAlarm, Node: 2})
	if r := c.at(1000, put("q", "y")); !errIs(r, ErrNoSpace) {
		t.Fatalf("with node 3's alarm still raised = %v", r)
	}
	c.must(Command{Op: OpAlarm, Node: 3})
	c.must(put("q", "y"))
}

// Commands of versions 1 to 3 were accepted before limits existed, and
// replay so whatever the limits and alarms now; they are counted all the
// same. A version 3 enqueue with a bad key still makes its queue, as it
// did.
func TestOldVersionsAreNotLimited(t *testing.T) {
	c := newClock(t)
	c.must(put("q", "x"))
	c.must(Command{Op: OpSetLimits, MaxQueues: 1, MaxBytes: 1})
	c.must(Command{Op: OpAlarm, Node: 1, Raise: true})
	v3 := func(cmd Command) []byte { return cmd.encodeIn(commandV3) }
	for i, cmd := range [][]byte{
		v3(put("q", "y")), v3(batchOf("r", 2, "y")), encodeV2ForTest(t, Command{Op: OpEnqueue, Time: 1000, Queue: "s", Body: []byte("z")}),
		encodeV1ForTest("t", "w"), v3(Command{Op: OpConfigure, Queue: "u", MaxMessages: 1}),
	} {
		if r := c.f.Apply(uint64(100+i), cmd); asErr(r) != nil {
			t.Fatalf("command %d: %v", i, r)
		}
	}
	if r := c.f.Apply(200, v3(Command{Op: OpEnqueue, Queue: "v", IdempotencyKey: "\n"})); !errIs(r, ErrInvalidArg) {
		t.Fatalf("bad key = %v", r)
	}
	wantQueues("q", "r", "s", "t", "u", "v")(t, c.f)
	if l := c.f.Limits(); l.Bytes != 6*MessageCost("", 1) {
		t.Fatalf("limits %+v", l)
	}
	checkCounts(t, c.f)
}

// Admit gives the answer Apply gives on the same state, and changes
// nothing.
func TestAdmitAgreesWithApply(t *testing.T) {
	w := newWorkload(11)
	a := newClock(t)
	checked := map[bool]int{}
	for step := range 3000 {
		w.apply(t, 1, a)
		if step%3 != 0 {
			continue
		}
		a.at(w.ms, Command{Op: OpTick}) // expiry done: Admit does none
		q := w.queues[w.rng.IntN(len(w.queues))]
		cmd, n, cost := put(q, "abc"), 1, MessageCost("", 3)
		if w.rng.IntN(2) == 0 {
			cmd, n, cost = batchOf(q, 3, "ab"), 3, 3*MessageCost("", 2)
		}
		before, _ := a.f.Snapshot()
		admit := a.f.Admit(q, n, cost)
		if after, _ := a.f.Snapshot(); string(before) != string(after) {
			t.Fatal("Admit changed the state")
		}
		r := a.at(w.ms, cmd)
		if admit != nil && !reflect.DeepEqual(r, any(admit)) || admit == nil && asErr(r) != nil {
			t.Fatalf("step %d: Admit %v, Apply %v", step, admit, r)
		}
		checked[admit == nil]++
	}
	if checked[true] == 0 || checked[false] == 0 {
		t.Fatalf("admitted and refused: %v", checked)
	}
	t.Logf("admitted and refused: %v", checked)
	a.must(Command{Op: OpSetLimits})
	a.must(Command{Op: OpAlarm, Node: 1})
	a.must(Command{Op: OpAlarm, Node: 2})
	a.must(Command{Op: OpEnqueue, Queue: "k", IdempotencyKey: "key"})
	if !a.f.Remembers("k", "key") || a.f.Remembers("k", "other") || a.f.Remembers("none", "key") {
		t.Fatal("Remembers")
	}
}

func TestLimitErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&LimitError{Limit: "max_messages", Queue: "jobs", Value: 10, Usage: 10, Request: 2}, "queuefsm: queue full: queue jobs max_messages is 10, 10 in use, 2 more asked"},
		{&LimitError{Limit: "max_bytes", Value: 100, Usage: 90, Request: 20}, "queuefsm: cluster full: cluster max_bytes is 100, 90 in use, 20 more asked"},
		{fmt.Errorf("apply: %w", &LimitError{Limit: "max_queues", Value: 1, Usage: 1, Request: 1}), "apply: queuefsm: cluster full: cluster max_queues is 1, 1 in use, 1 more asked"},
	} {
		if tc.err.Error() != tc.want {
			t.Errorf("%q, want %q", tc.err, tc.want)
		}
	}
	if q := error(&LimitError{Queue: "q"}); !errors.Is(q, ErrQueueFull) || errors.Is(q, ErrClusterFull) {
		t.Error("a queue's limit is ErrQueueFull only")
	}
	if c := error(&LimitError{}); errors.Is(c, ErrQueueFull) || !errors.Is(c, ErrClusterFull) {
		t.Error("a cluster limit is ErrClusterFull only")
	}
}
