package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/queuefsm"
)

func locked(fn func()) { fn() } // a view for tests: one goroutine applies

// waiterHarness applies commands to a notifyingFSM and starts waiters.
type waiterHarness struct {
	t   *testing.T
	f   *notifyingFSM
	seq uint64
}

func (h *waiterHarness) apply(c queuefsm.Command) any {
	h.seq++
	c.Time = 1000 + int64(h.seq)
	return h.f.Apply(h.seq, c.Encode())
}

// wait starts a waiter on queue; its turn (or error) arrives on the channel.
func (h *waiterHarness) wait(ctx context.Context, queue string) <-chan error {
	got := make(chan error, 1)
	before := h.waiting(queue)
	started := make(chan struct{})
	go func() {
		close(started)
		t, err := h.f.await(ctx, locked, queue, 1)
		if err == nil {
			t.Done()
		}
		got <- err
	}()
	<-started
	h.waitFor(func() bool { return h.waiting(queue) > before || len(got) > 0 })
	return got
}

func (h *waiterHarness) waiting(queue string) int {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	if qw := h.f.queues[queue]; qw != nil {
		return len(qw.waiting)
	}
	return 0
}

func (h *waiterHarness) waitFor(cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatal("condition not reached in 30s")
		}
		time.Sleep(time.Millisecond)
	}
}

func pending(ch <-chan error) bool { return len(ch) == 0 }

// Waiters are woken only when a message is ready in their queue, and only
// as many as there are messages; an apply on another queue, or one that
// leaves nothing ready, wakes no one.
func TestWaitersWokenByReadyMessages(t *testing.T) {
	h := &waiterHarness{t: t, f: newNotifyingFSM()}
	ctx := context.Background()
	h.apply(queuefsm.Command{Op: queuefsm.OpDequeue, Queue: "q"}) // the queue exists, empty
	w1 := h.wait(ctx, "q")
	w2 := h.wait(ctx, "q")
	h.apply(queuefsm.Command{Op: queuefsm.OpDequeue, Queue: "q"})                        // an empty take
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "other", Body: []byte("x")}) // another queue
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "q", Body: []byte("d"), Delay: 60_000})
	if !pending(w1) || !pending(w2) || h.waiting("q") != 2 {
		t.Fatal("a waiter was woken with nothing ready in its queue")
	}
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "q", Body: []byte("m")})
	h.waitFor(func() bool { return !pending(w1) })
	if err := <-w1; err != nil {
		t.Fatal(err)
	}
	// w1's turn was handed back untaken (the test's waiter takes nothing),
	// so it passes to w2: the message is still ready.
	h.waitFor(func() bool { return !pending(w2) })
	if err := <-w2; err != nil {
		t.Fatal(err)
	}
	if n := len(h.f.queues); n != 0 {
		t.Fatalf("%d queues still tracked with nobody waiting", n)
	}
}

// A turn not handed back holds its message: the next waiter is not woken
// for it until the turn's take is over.
func TestTurnsMatchReadyMessages(t *testing.T) {
	h := &waiterHarness{t: t, f: newNotifyingFSM()}
	ctx := context.Background()
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "q", Body: []byte("m")})
	t1, err := h.f.await(ctx, locked, "q", 1) // one ready: a turn at once
	if err != nil {
		t.Fatal(err)
	}
	w2 := h.wait(ctx, "q")
	if !pending(w2) {
		t.Fatal("a second waiter got a turn for the message promised to the first")
	}
	h.apply(queuefsm.Command{Op: queuefsm.OpDequeue, Queue: "q"}) // the first takes it
	t1.Done()
	if !pending(w2) {
		t.Fatal("a waiter was woken for a message already taken")
	}
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "q", Body: []byte("n")})
	h.waitFor(func() bool { return !pending(w2) })
}

// Lease expiry, seen at a tick, wakes waiters.
func TestWaitersWokenByExpiry(t *testing.T) {
	h := &waiterHarness{t: t, f: newNotifyingFSM()}
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "q", Body: []byte("m")})
	h.apply(queuefsm.Command{Op: queuefsm.OpLease, Queue: "q", TTL: 1000})
	w := h.wait(context.Background(), "q")
	h.seq++
	h.f.Apply(h.seq, queuefsm.Command{Op: queuefsm.OpTick, Time: 1000 + int64(h.seq) + 5000}.Encode())
	h.waitFor(func() bool { return !pending(w) })
}

// A waiter whose context ends gets its error; at shutdown every waiter,
// and every later one, gets ErrStopping at once.
func TestWaitersLeaveAndStop(t *testing.T) {
	h := &waiterHarness{t: t, f: newNotifyingFSM()}
	ctx, cancel := context.WithCancel(context.Background())
	w := h.wait(ctx, "q")
	cancel()
	h.waitFor(func() bool { return !pending(w) })
	if err := <-w; !errors.Is(err, context.Canceled) {
		t.Fatalf("left: %v", err)
	}
	w = h.wait(context.Background(), "q")
	h.f.stopWaiting()
	h.waitFor(func() bool { return !pending(w) })
	if err := <-w; !errors.Is(err, httpapi.ErrStopping) {
		t.Fatalf("at shutdown: %v", err)
	}
	if _, err := h.f.await(context.Background(), locked, "q", 1); !errors.Is(err, httpapi.ErrStopping) {
		t.Fatalf("after shutdown: %v", err)
	}
}

// A waiter that wants up to N is promised up to N: three ready messages
// and three waiters of ?max=10 wake one of them, not three.
func TestWaitersPromiseWhatTheyWant(t *testing.T) {
	h := &waiterHarness{t: t, f: newNotifyingFSM()}
	ctx := context.Background()
	h.apply(queuefsm.Command{Op: queuefsm.OpDequeue, Queue: "q"})
	var turns []httpapi.Turn
	got := make(chan httpapi.Turn, 3)
	for range 3 {
		go func() {
			tr, err := h.f.await(ctx, locked, "q", 10)
			if err == nil {
				got <- tr
			}
		}()
	}
	h.waitFor(func() bool { return h.waiting("q") == 3 })
	h.apply(queuefsm.Command{Op: queuefsm.OpBatch, Queue: "q", Items: []queuefsm.BatchItem{{Body: "a"}, {Body: "b"}, {Body: "c"}}})
	turns = append(turns, <-got)
	if h.waiting("q") != 2 || len(got) != 0 {
		t.Fatalf("%d waiters still wait, %d more woken, for 3 messages promised to one", h.waiting("q"), len(got))
	}
	h.apply(queuefsm.Command{Op: queuefsm.OpPopMany, Queue: "q", Max: 10})
	turns[0].Done()
	if h.waiting("q") != 2 {
		t.Fatal("a waiter was woken after the messages were taken")
	}
}

// Deleting a queue answers its waiters at once with ErrQueueDeleted, and
// only its own: a refused delete, or one of another queue, wakes no one.
// A turn given before the delete is handed back without harm.
func TestWaitersAnsweredByDelete(t *testing.T) {
	h := &waiterHarness{t: t, f: newNotifyingFSM()}
	ctx := context.Background()
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "q", Body: []byte("m")})
	h.apply(queuefsm.Command{Op: queuefsm.OpDequeue, Queue: "other"})
	turn, err := h.f.await(ctx, locked, "q", 1) // the one ready message's turn
	if err != nil {
		t.Fatal(err)
	}
	w1, w2, wo := h.wait(ctx, "q"), h.wait(ctx, "q"), h.wait(ctx, "other")
	h.apply(queuefsm.Command{Op: queuefsm.OpDeleteQueue, Queue: "nope"}) // refused: unknown
	if !pending(w1) || !pending(w2) {
		t.Fatal("a refused delete answered waiters")
	}
	h.apply(queuefsm.Command{Op: queuefsm.OpDeleteQueue, Queue: "q"})
	for _, w := range []<-chan error{w1, w2} {
		h.waitFor(func() bool { return !pending(w) })
		if err := <-w; !errors.Is(err, httpapi.ErrQueueDeleted) {
			t.Fatalf("after delete: %v", err)
		}
	}
	if !pending(wo) {
		t.Fatal("deleting q answered a waiter of another queue")
	}
	if !turn.Deleted() {
		t.Fatal("a turn out when its queue was deleted does not say so: its poll would wait on")
	}
	turn.Done()
	if h.waiting("q") != 0 {
		t.Fatal("waiters of a deleted queue still tracked")
	}
	w3 := h.wait(ctx, "q") // the name used again: waits as before
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "q", Body: []byte("n")})
	h.waitFor(func() bool { return !pending(w3) })
	if err := <-w3; err != nil {
		t.Fatal(err)
	}
}

// A snapshot received without a queue that existed deletes it: its
// waiters are answered, its turns out marked, as by a delete; waiters of
// a queue that never existed, or still exists, wait on.
func TestWaitersAnsweredByRestoreWithoutTheirQueue(t *testing.T) {
	h := &waiterHarness{t: t, f: newNotifyingFSM()}
	ctx := context.Background()
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "q", Body: []byte("m")})
	h.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "kept", Body: []byte("m")})
	h.apply(queuefsm.Command{Op: queuefsm.OpDequeue, Queue: "kept"})
	turn, err := h.f.await(ctx, locked, "q", 1)
	if err != nil {
		t.Fatal(err)
	}
	w, wLater := h.wait(ctx, "q"), h.wait(ctx, "never")
	wKept := h.wait(ctx, "kept")
	// The snapshot has "kept" (empty) but not "q".
	h2 := &waiterHarness{t: t, f: newNotifyingFSM()}
	h2.apply(queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: "kept", Body: []byte("m")})
	h2.apply(queuefsm.Command{Op: queuefsm.OpDequeue, Queue: "kept"})
	snap, err := h2.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.f.RestoreFrom(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	h.waitFor(func() bool { return !pending(w) })
	if err := <-w; !errors.Is(err, httpapi.ErrQueueDeleted) {
		t.Fatalf("a waiter of a queue the snapshot has not: %v", err)
	}
	if !turn.Deleted() {
		t.Fatal("a turn out on a queue the snapshot has not is not marked")
	}
	turn.Done()
	if !pending(wLater) || !pending(wKept) {
		t.Fatal("a waiter of a queue that never existed, or still exists, was answered")
	}
}
