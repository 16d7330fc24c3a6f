package queuefsm

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
)

// opCase is one case of a handler's table: setup commands, applied in
// order with indexes 1, 2, …, then cmd; want is the result, or a sentinel
// the result must wrap. Commands without a time run at 1000.
type opCase struct {
	name  string
	setup []Command
	cmd   Command
	want  any
	check func(t *testing.T, f *FSM)
}

func runOps(t *testing.T, cases []opCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t)
			for i, s := range tc.setup {
				if err, ok := applyAt(c, s).(error); ok {
					t.Fatalf("setup %d (%v): %v", i+1, s.Op, err)
				}
			}
			got := applyAt(c, tc.cmd)
			if want, ok := tc.want.(error); ok {
				if !errors.Is(asErr(got), want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			} else if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, c.f)
			}
			checkCounts(t, c.f)
		})
	}
}

func applyAt(c *clockFSM, cmd Command) any {
	ms := cmd.Time
	if ms == 0 {
		ms = 1000
	}
	return c.at(ms, cmd)
}

func asErr(r any) error {
	err, _ := r.(error)
	return err
}

// tok is the token of the lease taken by the command of index seq on
// message id.
func tok(seq, id uint64) string {
	return strconv.FormatUint(seq, 36) + "." + strconv.FormatUint(id, 36)
}

func put(q, body string) Command { return Command{Op: OpEnqueue, Queue: q, Body: []byte(body)} }
func lease(q string, ttl int64) Command {
	return Command{Op: OpLease, Queue: q, TTL: ttl}
}

func wantQueues(names ...string) func(t *testing.T, f *FSM) {
	return func(t *testing.T, f *FSM) {
		t.Helper()
		var got []string
		for _, q := range f.Queues() {
			got = append(got, q.Name)
		}
		if !reflect.DeepEqual(got, names) {
			t.Fatalf("queues %v, want %v", got, names)
		}
	}
}

func wantStats(q string, want func(s QueueStats) bool) func(t *testing.T, f *FSM) {
	return func(t *testing.T, f *FSM) {
		t.Helper()
		s, err := f.Stats(q)
		if err != nil || !want(s) {
			t.Fatalf("stats of %s: %+v %v", q, s, err)
		}
	}
}

var msgA = Message{ID: 1, Body: "a", Enqueued: 1000}

func TestOpsTable(t *testing.T) {
	for op := OpEnqueue; op <= OpAlarm; op++ {
		if ops[op].apply == nil {
			t.Errorf("%v has no handler", op)
		}
		c := Command{Op: op, Time: 7, Proposer: 2, Epoch: 3, Queue: "q"}
		switch op {
		case OpEnqueue:
			c.ContentType, c.IdempotencyKey, c.Delay, c.Body = "t", "k", 5, []byte("b")
		case OpBatch:
			c.Items = []BatchItem{{Body: "x"}}
		case OpConfigure:
			c.MaxDeliveries, c.DeadLetterQueue, c.Fields, c.MaxMessages, c.MaxBytes = 3, "d", FieldMaxBytes, -1, 5
		case OpSetLimits:
			c.Queue, c.Fields, c.MaxQueues, c.MaxBytes = "", FieldMaxQueues, 9, 10
		case OpAlarm:
			c.Queue, c.Node, c.Raise = "", 4, true
		}
		b := c.Encode()
		if got, err := DecodeCommand(b); err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("%v: decoded %+v %v", op, got, err)
		}
		if OpOf(b) != op {
			t.Errorf("OpOf(%v) = %v", op, OpOf(b))
		}
		if op >= OpDeleteQueue {
			if b[0] != commandV4 {
				t.Errorf("%v written in version %d", op, b[0])
			}
			b[0] = commandV3 // ops of version 4 are malformed in version 3
			if _, err := DecodeCommand(b); !errors.Is(err, ErrBadCommand) {
				t.Errorf("%v in version 3: %v", op, err)
			}
		}
	}
	if r := New().Apply(1, Command{Op: OpAlarm, Node: 1, Raise: true}.Encode()[:5]); !errIs(r, ErrBadCommand) {
		t.Errorf("truncated alarm = %v", r)
	}
	bad := Command{Op: OpAlarm, Node: 1}.Encode()
	bad[len(bad)-1] = 2
	if r := New().Apply(1, bad); !errIs(r, ErrBadCommand) {
		t.Errorf("alarm with raise byte 2 = %v", r)
	}
}

func TestEnqueueOp(t *testing.T) {
	keyed := Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "k", Body: []byte("a")}
	runOps(t, []opCase{
		{name: "stores", cmd: put("q", "a"), want: EnqueueResult{ID: 1},
			check: wantStats("q", func(s QueueStats) bool { return s.Depth == 1 && s.Bytes == MessageCost("", 1) && s.OldestReady == 1000 })},
		{name: "delayed", cmd: Command{Op: OpEnqueue, Queue: "q", Delay: 500}, want: EnqueueResult{ID: 1},
			check: wantStats("q", func(s QueueStats) bool { return s.Delayed == 1 && s.Depth == 0 })},
		{name: "ids go on", setup: []Command{put("q", "a"), put("q", "b")}, cmd: put("q", "c"), want: EnqueueResult{ID: 3}},
		{name: "replay", setup: []Command{keyed}, cmd: keyed, want: EnqueueResult{ID: 1, Replay: true},
			check: wantStats("q", func(s QueueStats) bool { return s.Depth == 1 && s.Keys == 1 && s.Totals.Enqueued == 1 })},
		{name: "key reused", setup: []Command{keyed}, cmd: Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "k", Body: []byte("b")}, want: ErrKeyReused},
		{name: "bad key makes no queue", cmd: Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "a\nb"}, want: ErrInvalidArg, check: wantQueues()},
		{name: "bad name", cmd: put("a/b", "x"), want: ErrInvalidName, check: wantQueues()},
		{name: "negative delay", cmd: Command{Op: OpEnqueue, Queue: "q", Delay: -1}, want: ErrInvalidArg, check: wantQueues()},
		{name: "ids above a deleted queue's", setup: []Command{put("q", "a"), put("q", "b"), {Op: OpDeleteQueue, Queue: "q"}},
			cmd: put("r", "a"), want: EnqueueResult{ID: 3}},
	})
}

func TestBatchOp(t *testing.T) {
	items := []BatchItem{{ContentType: "text/plain", Body: "a"}, {Body: "bb"}, {Body: ""}}
	runOps(t, []opCase{
		{name: "stores all, ready", setup: []Command{put("q", "0")}, cmd: Command{Op: OpBatch, Queue: "q", Items: items}, want: BatchResult{IDs: []uint64{2, 3, 4}},
			check: wantStats("q", func(s QueueStats) bool {
				return s.Depth == 4 && s.Bytes == MessageCost("", 1)+MessageCost("text/plain", 1)+MessageCost("", 2)+MessageCost("", 0)
			})},
		{name: "empty", cmd: Command{Op: OpBatch, Queue: "q"}, want: ErrInvalidArg, check: wantQueues()},
	})
}

func TestDequeueOp(t *testing.T) {
	poison := []Command{{Op: OpConfigure, Queue: "q", MaxDeliveries: 1, DeadLetterQueue: "d"}, put("q", "a"), put("q", "b"),
		lease("q", 100), {Op: OpRelease, Queue: "q", ID: 1, Token: tok(4, 1)}}
	runOps(t, []opCase{
		{name: "unknown queue", cmd: Command{Op: OpDequeue, Queue: "q"}, want: DequeueResult{Now: 1000}, check: wantQueues()},
		{name: "head", setup: []Command{put("q", "a"), put("q", "b")}, cmd: Command{Op: OpDequeue, Queue: "q"},
			want:  DequeueResult{Message: msgA, Found: true, Now: 1000},
			check: wantStats("q", func(s QueueStats) bool { return s.Depth == 1 && s.Totals.Popped == 1 })},
		{name: "empty", setup: []Command{put("q", "a"), {Op: OpDequeue, Queue: "q"}}, cmd: Command{Op: OpDequeue, Queue: "q"}, want: DequeueResult{Now: 1000}},
		{name: "delayed is not ready", setup: []Command{{Op: OpEnqueue, Queue: "q", Delay: 10}}, cmd: Command{Op: OpDequeue, Queue: "q"}, want: DequeueResult{Now: 1000}},
		{name: "dead-letters on the way", setup: poison, cmd: Command{Op: OpDequeue, Queue: "q"},
			want:  DequeueResult{Message: Message{ID: 2, Body: "b", Enqueued: 1000}, Found: true, Now: 1000},
			check: wantStats("d", func(s QueueStats) bool { return s.Depth == 1 && s.Totals.Enqueued == 1 })},
	})
}

func TestPopManyOp(t *testing.T) {
	three := []Command{put("q", "a"), put("q", "b"), put("q", "c")}
	runOps(t, []opCase{
		{name: "unknown queue, before max is checked", cmd: Command{Op: OpPopMany, Queue: "q"}, want: PopManyResult{}},
		{name: "max 0", setup: three, cmd: Command{Op: OpPopMany, Queue: "q"}, want: ErrInvalidArg},
		{name: "two of three", setup: three, cmd: Command{Op: OpPopMany, Queue: "q", Max: 2},
			want:  PopManyResult{Messages: []Message{msgA, {ID: 2, Body: "b", Enqueued: 1000}}, Now: 1000},
			check: wantStats("q", func(s QueueStats) bool { return s.Depth == 1 && s.Totals.Popped == 2 })},
	})
}

func TestLeaseOp(t *testing.T) {
	runOps(t, []opCase{
		{name: "unknown queue", cmd: lease("q", 10), want: DequeueResult{Now: 1000}, check: wantQueues()},
		{name: "head", setup: []Command{put("q", "a")}, cmd: lease("q", 10),
			want:  DequeueResult{Message: Message{ID: 1, Body: "a", Deliveries: 1, Enqueued: 1000}, Found: true, Token: tok(2, 1), Expires: 1010, Now: 1000},
			check: wantStats("q", func(s QueueStats) bool { return s.Leased == 1 && s.Depth == 0 && s.Bytes == MessageCost("", 1) })},
		{name: "negative ttl", setup: []Command{put("q", "a")}, cmd: lease("q", -1), want: ErrInvalidArg},
	})
}

func TestAckOp(t *testing.T) {
	leased := []Command{put("q", "a"), lease("q", 10)}
	runOps(t, []opCase{
		{name: "acks", setup: leased, cmd: Command{Op: OpAck, Queue: "q", ID: 1, Token: tok(2, 1)}, want: Done{},
			check: wantStats("q", func(s QueueStats) bool { return s.Leased == 0 && s.Bytes == 0 && s.Totals.Acked == 1 })},
		{name: "foreign token", setup: leased, cmd: Command{Op: OpAck, Queue: "q", ID: 1, Token: tok(3, 1)}, want: ErrLeaseLost},
		{name: "unknown id", setup: leased, cmd: Command{Op: OpAck, Queue: "q", ID: 2, Token: tok(2, 2)}, want: ErrNoMessage},
		{name: "unknown queue", cmd: Command{Op: OpAck, Queue: "q", ID: 1, Token: tok(2, 1)}, want: ErrNoMessage, check: wantQueues()},
		{name: "expired", setup: leased, cmd: Command{Op: OpAck, Time: 1010, Queue: "q", ID: 1, Token: tok(2, 1)}, want: ErrLeaseLost},
	})
}

func TestReleaseOp(t *testing.T) {
	leased := []Command{put("q", "a"), lease("q", 10)}
	runOps(t, []opCase{
		{name: "ready again", setup: leased, cmd: Command{Op: OpRelease, Queue: "q", ID: 1, Token: tok(2, 1)}, want: Done{},
			check: wantStats("q", func(s QueueStats) bool { return s.Depth == 1 && s.Leased == 0 })},
		{name: "after a delay", setup: leased, cmd: Command{Op: OpRelease, Queue: "q", ID: 1, Token: tok(2, 1), Delay: 5}, want: Done{},
			check: wantStats("q", func(s QueueStats) bool { return s.Delayed == 1 })},
		{name: "foreign token", setup: leased, cmd: Command{Op: OpRelease, Queue: "q", ID: 1, Token: "x"}, want: ErrLeaseLost},
	})
}

func TestExtendOp(t *testing.T) {
	leased := []Command{put("q", "a"), lease("q", 10)}
	runOps(t, []opCase{
		{name: "extends", setup: leased, cmd: Command{Op: OpExtend, Time: 1005, Queue: "q", ID: 1, Token: tok(2, 1), TTL: 100},
			want: LeaseResult{Expires: 1105, Now: 1005}},
		{name: "foreign token", setup: leased, cmd: Command{Op: OpExtend, Queue: "q", ID: 1, Token: tok(1, 1), TTL: 100}, want: ErrLeaseLost},
	})
}

func TestConfigureOp(t *testing.T) {
	full := Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 3, DeadLetterQueue: "d", MaxMessages: 10, MaxBytes: 2000}
	small := []Command{{Op: OpSetLimits, MaxQueues: 2, MaxBytes: 1 << 20}}
	runOps(t, []opCase{
		{name: "sets all, makes both", cmd: full, want: Done{}, check: func(t *testing.T, f *FSM) {
			wantQueues("d", "q")(t, f)
			wantStats("q", func(s QueueStats) bool {
				return s.Config == QueueConfig{MaxDeliveries: 3, DeadLetterQueue: "d", MaxMessages: 10, MaxBytes: 2000, Created: 1000, Modified: 1000}
			})(t, f)
		}},
		{name: "sets only its fields", setup: []Command{full}, cmd: Command{Op: OpConfigure, Queue: "q", Fields: FieldMaxMessages | FieldDeadLetterQueue, MaxMessages: 5},
			want: Done{}, check: wantStats("q", func(s QueueStats) bool {
				return s.Config == QueueConfig{MaxDeliveries: 3, MaxMessages: 5, MaxBytes: 2000, Created: 1000, Modified: 1000}
			})},
		{name: "no fields is all fields", setup: []Command{full}, cmd: Command{Op: OpConfigure, Queue: "q"},
			want: Done{}, check: wantStats("q", func(s QueueStats) bool { return s.Config == QueueConfig{Created: 1000, Modified: 1000} })},
		{name: "own dead-letter queue", cmd: Command{Op: OpConfigure, Queue: "q", DeadLetterQueue: "q"}, want: ErrInvalidArg, check: wantQueues()},
		{name: "bad dead-letter name", cmd: Command{Op: OpConfigure, Queue: "q", DeadLetterQueue: ".."}, want: ErrInvalidName, check: wantQueues()},
		{name: "negative limit", cmd: Command{Op: OpConfigure, Queue: "q", MaxBytes: -1}, want: ErrInvalidArg, check: wantQueues()},
		{name: "a field it has not", cmd: Command{Op: OpConfigure, Queue: "q", Fields: FieldMaxQueues}, want: ErrInvalidArg},
		{name: "no room for both", setup: append(small, put("a", "x")), cmd: full, want: ErrClusterFull, check: wantQueues("a")},
		{name: "room for one, no dead letters", setup: append(small, put("a", "x")), cmd: Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 2}, want: Done{}},
		{name: "an existing queue at max_queues", setup: append(small, put("a", "x"), put("d", "x")), cmd: Command{Op: OpConfigure, Queue: "a", DeadLetterQueue: "d", MaxMessages: 1}, want: Done{}},
	})
}

func TestTickOp(t *testing.T) {
	setup := []Command{put("a", "x"), lease("a", 10), {Op: OpEnqueue, Queue: "b", Delay: 10}, {Op: OpEnqueue, Queue: "c", IdempotencyKey: "k"}}
	for ms := int64(1000); ms <= 1000+DedupeWindow-MaxClockStep; ms += MaxClockStep {
		setup = append(setup, Command{Op: OpEnqueue, Time: ms, Queue: "d"}) // the clock moves MaxClockStep at most
	}
	runOps(t, []opCase{
		{name: "ends leases and delays everywhere, forgets keys", setup: setup,
			cmd: Command{Op: OpTick, Time: 1000 + DedupeWindow, Queue: "ignored"}, want: Done{}, check: func(t *testing.T, f *FSM) {
				for _, q := range []string{"a", "b"} {
					wantStats(q, func(s QueueStats) bool { return s.Depth == 1 && len(f.queues[q].timers) == 0 })(t, f)
				}
				wantStats("c", func(s QueueStats) bool { return s.Keys == 0 && s.Bytes == MessageCost("", 0) })(t, f)
			}},
	})
}

func TestDeleteQueueOp(t *testing.T) {
	runOps(t, []opCase{
		{name: "unknown", cmd: Command{Op: OpDeleteQueue, Queue: "q"}, want: ErrNoQueue},
		{name: "bad name", cmd: Command{Op: OpDeleteQueue, Queue: "."}, want: ErrInvalidName},
		{name: "removes all", setup: []Command{put("q", "a"), lease("q", 10), {Op: OpEnqueue, Queue: "q", IdempotencyKey: "k"}, put("r", "b")},
			cmd: Command{Op: OpDeleteQueue, Queue: "q"}, want: Done{}, check: func(t *testing.T, f *FSM) {
				wantQueues("r")(t, f)
				if f.idFloor != 2 || f.Limits().Bytes != MessageCost("", 1) {
					t.Fatalf("floor %d, limits %+v", f.idFloor, f.Limits())
				}
			}},
		{name: "named as dead-letter queue", setup: []Command{{Op: OpConfigure, Queue: "q", DeadLetterQueue: "d"}},
			cmd: Command{Op: OpDeleteQueue, Queue: "d"}, want: Done{}, check: func(t *testing.T, f *FSM) {
				if f.DeadLetterQueue("q") != "d" {
					t.Fatal("the dead-letter queue is no longer named")
				}
			}},
	})
}

func TestPurgeOp(t *testing.T) {
	runOps(t, []opCase{
		{name: "unknown", cmd: Command{Op: OpPurge, Queue: "q"}, want: ErrNoQueue},
		{name: "drops ready and delayed, keeps leased and keys", setup: []Command{
			put("q", "a"), put("q", "b"), lease("q", 10), {Op: OpEnqueue, Queue: "q", Delay: 50, IdempotencyKey: "k"}, put("q", "c")},
			cmd: Command{Op: OpPurge, Queue: "q"}, want: PurgeResult{Dropped: 3},
			check: wantStats("q", func(s QueueStats) bool {
				return s.Depth == 0 && s.Leased == 1 && s.Delayed == 0 && s.Keys == 1 &&
					s.Bytes == MessageCost("", 1)+KeyCost("k") && s.Totals.Purged == 3
			})},
		{name: "empty", setup: []Command{put("q", "a"), {Op: OpDequeue, Queue: "q"}}, cmd: Command{Op: OpPurge, Queue: "q"}, want: PurgeResult{}},
	})
}

func TestSetLimitsOp(t *testing.T) {
	limits := func(q, b int64) func(t *testing.T, f *FSM) {
		return func(t *testing.T, f *FSM) {
			if l := f.Limits(); l.MaxQueues != q || l.MaxBytes != b {
				t.Fatalf("limits %+v", l)
			}
		}
	}
	runOps(t, []opCase{
		{name: "defaults", cmd: Command{Op: OpTick}, want: Done{}, check: limits(DefaultMaxQueues, DefaultMaxBytes)},
		{name: "both", cmd: Command{Op: OpSetLimits, MaxQueues: 5, MaxBytes: 7}, want: Done{}, check: limits(5, 7)},
		{name: "one", cmd: Command{Op: OpSetLimits, Fields: FieldMaxBytes, MaxBytes: 7}, want: Done{}, check: limits(DefaultMaxQueues, 7)},
		{name: "none is no limit", cmd: Command{Op: OpSetLimits}, want: Done{}, check: limits(0, 0)},
		{name: "below usage", setup: []Command{put("a", "x"), put("b", "x")}, cmd: Command{Op: OpSetLimits, MaxQueues: 1, MaxBytes: 1}, want: Done{}, check: limits(1, 1)},
		{name: "negative", cmd: Command{Op: OpSetLimits, MaxQueues: -1}, want: ErrInvalidArg, check: limits(DefaultMaxQueues, DefaultMaxBytes)},
		{name: "a field it has not", cmd: Command{Op: OpSetLimits, Fields: FieldMaxMessages}, want: ErrInvalidArg},
	})
}

func TestAlarmOp(t *testing.T) {
	alarms := func(ids ...uint64) func(t *testing.T, f *FSM) {
		return func(t *testing.T, f *FSM) {
			if got := f.Alarms(); !reflect.DeepEqual(got, ids) || !reflect.DeepEqual(f.Limits().Alarms, ids) {
				t.Fatalf("alarms %v, want %v", got, ids)
			}
		}
	}
	raise := func(n uint64) Command { return Command{Op: OpAlarm, Node: n, Raise: true} }
	runOps(t, []opCase{
		{name: "raise", setup: []Command{raise(3)}, cmd: raise(2), want: Done{}, check: alarms(2, 3)},
		{name: "raise again", setup: []Command{raise(2)}, cmd: raise(2), want: Done{}, check: alarms(2)},
		{name: "clear", setup: []Command{raise(2), raise(3)}, cmd: Command{Op: OpAlarm, Node: 2}, want: Done{}, check: alarms(3)},
		{name: "clear a clear one", cmd: Command{Op: OpAlarm, Node: 2}, want: Done{}, check: alarms()},
		{name: "node 0", cmd: raise(0), want: ErrInvalidArg, check: alarms()},
		{name: "node too big", cmd: raise(MaxProposer + 1), want: ErrInvalidArg, check: alarms()},
	})
}
