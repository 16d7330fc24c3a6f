package queuefsm

import "testing"

// Ready counts what a take would find, also when the clock has moved past
// a lease or a delay through another queue's command (expiry is lazy), and
// changes nothing.
func TestReadyCountsDueTimers(t *testing.T) {
	f := New()
	seq := uint64(0)
	apply := func(c Command) any {
		seq++
		return f.Apply(seq, c.Encode())
	}
	apply(Command{Op: OpEnqueue, Time: 1000, Queue: "q", Body: []byte("a")})
	apply(Command{Op: OpEnqueue, Time: 1000, Queue: "q", Body: []byte("b"), Delay: 2000})
	if r := apply(Command{Op: OpLease, Time: 1000, Queue: "q", TTL: 1000}).(DequeueResult); !r.Found {
		t.Fatal("no lease")
	}
	if n := f.Ready("q"); n != 0 {
		t.Fatalf("ready %d with one leased and one delayed", n)
	}
	apply(Command{Op: OpEnqueue, Time: 2500, Queue: "other", Body: []byte("x")}) // lease over
	if n := f.Ready("q"); n != 1 {
		t.Fatalf("ready %d after the lease ended", n)
	}
	apply(Command{Op: OpEnqueue, Time: 3500, Queue: "other", Body: []byte("y")}) // delay over
	before, _ := f.Snapshot()
	if n := f.Ready("q"); n != 2 {
		t.Fatalf("ready %d after the delay ended too", n)
	}
	if after, _ := f.Snapshot(); string(after) != string(before) {
		t.Fatal("Ready changed the state")
	}
	for i := range 2 {
		if r := apply(Command{Op: OpDequeue, Time: 3500, Queue: "q"}).(DequeueResult); !r.Found {
			t.Fatalf("take %d found nothing though Ready said 2", i)
		}
	}
	if n := f.Ready("q"); n != 0 {
		t.Fatalf("ready %d after taking both", n)
	}
}

// A snapshot holding a message in a state no replica writes is refused:
// filed as ready, the message could be neither taken nor removed.
func TestRestoreRefusesUnknownState(t *testing.T) {
	f := New()
	f.Apply(1, Command{Op: OpEnqueue, Time: 1000, Queue: "q", Body: []byte("a")}.Encode())
	f.queues["q"].msgs.get(1).state = 7
	data, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := New().Restore(data); err == nil {
		t.Fatal("a message in state 7 was restored")
	}
}

// NextDeadline names the earliest lease, delay or key expiry; nothing
// pending, nothing due.
func TestNextDeadline(t *testing.T) {
	f := New()
	if _, ok := f.NextDeadline(); ok {
		t.Fatal("a deadline in an empty state machine")
	}
	f.Apply(1, Command{Op: OpEnqueue, Time: 1000, Queue: "q", Body: []byte("a"), IdempotencyKey: "k"}.Encode())
	if at, ok := f.NextDeadline(); !ok || at != 1000+DedupeWindow {
		t.Fatalf("key expiry: %d %v", at, ok)
	}
	f.Apply(2, Command{Op: OpLease, Time: 1000, Queue: "q", TTL: 5000}.Encode())
	if at, ok := f.NextDeadline(); !ok || at != 6000 {
		t.Fatalf("lease expiry: %d %v", at, ok)
	}
}
