package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// countingQueue counts the takes a long poll proposes.
func countingQueue(found func() bool) (*fakeQueue, *atomic.Int64) {
	var takes atomic.Int64
	q := &fakeQueue{dequeue: func(context.Context, string) (Message, bool, LogPosition, error) {
		takes.Add(1)
		if found() {
			return Message{ID: 1, Body: "m"}, true, LogPosition{Index: 9, Term: 1}, nil
		}
		return Message{}, false, LogPosition{Index: 9, Term: 1}, nil
	}, changed: make(chan struct{}), stopping: make(chan struct{})}
	return q, &takes
}

// A poll that waits on a queue with nothing ready proposes nothing, and
// its empty answer names no log position (none was written).
func TestLongPollWaitsWithoutTaking(t *testing.T) {
	q, takes := countingQueue(func() bool { return false })
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q?wait=200ms", nil))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("status %d", rec.Code)
	}
	if n := takes.Load(); n != 0 {
		t.Fatalf("an idle poll proposed %d takes", n)
	}
	if h := rec.Header().Get("Raft-Index"); h != "" {
		t.Fatalf("Raft-Index %q on a poll that wrote nothing", h)
	}
	// Without ?wait=, a pop is one take through the log, as before.
	if rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q", nil)); rec.Code != http.StatusNoContent || takes.Load() != 1 {
		t.Fatalf("plain pop: status %d, %d takes", rec.Code, takes.Load())
	}
}

// A turn leads to one take; a poll whose wait ends while the last read
// barrier finds a message ready takes it.
func TestLongPollTakesOnTurn(t *testing.T) {
	q, takes := countingQueue(func() bool { return true })
	close(q.changed)
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q?wait=20s", nil))
	if rec.Code != http.StatusOK || takes.Load() != 1 {
		t.Fatalf("status %d, %d takes", rec.Code, takes.Load())
	}
	q, takes = countingQueue(func() bool { return true })
	q.ready = true
	rec = serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q?wait=100ms", nil))
	if rec.Code != http.StatusOK || takes.Load() != 1 {
		t.Fatalf("after the barrier: status %d, %d takes", rec.Code, takes.Load())
	}
}

// At shutdown a waiting poll answers 204 at once, taking nothing.
func TestLongPollAnswersAtShutdown(t *testing.T) {
	q, takes := countingQueue(func() bool { return true })
	close(q.stopping)
	start := time.Now()
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q?wait=60s", nil))
	if rec.Code != http.StatusNoContent || takes.Load() != 0 {
		t.Fatalf("status %d, %d takes", rec.Code, takes.Load())
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("answered after %v, not at once", d)
	}
}

// Past MaxWaiters polls waiting on a node, a poll is refused at once with
// 429 and Retry-After; polls without ?wait= are not counted.
func TestLongPollCap(t *testing.T) {
	q, _ := countingQueue(func() bool { return false })
	h := NewRouter(q, nil, zap.NewNop(), Options{MaxWaiters: 2})
	q.awaiting = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 2)
	for range 2 {
		go func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/queues/q/leases?wait=60s", nil).WithContext(ctx))
			done <- rec.Code
		}()
		<-q.awaiting // this one waits now
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/queues/q?wait=1s", nil))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("a third waiter: status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	errorMessage(t, rec)
	q.awaiting = nil
	if rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q", nil)); rec.Code != http.StatusNoContent {
		t.Fatalf("a plain pop at the cap: %d", rec.Code)
	}
	cancel()
	for range 2 {
		if code := <-done; code != http.StatusNoContent {
			t.Fatalf("a waiter whose client left: %d", code)
		}
	}
}

// A refusal while waiting (a bad queue name) is answered as such, not as
// an empty queue once the wait ends.
func TestLongPollRefusal(t *testing.T) {
	q, _ := countingQueue(func() bool { return false })
	q.awaitErr = fmt.Errorf("%w: bad name", ErrInvalid)
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q?wait=20s", nil))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d", rec.Code)
	}
	errorMessage(t, rec)
}

type deletedTurn struct{}

func (deletedTurn) Done()         {}
func (deletedTurn) Deleted() bool { return true }

// A poll whose turn found nothing because the queue was deleted meanwhile
// answers 204 at once, as its waiting peers were answered, instead of
// waiting out its wait.
func TestLongPollAnswersWhenDeletedOnTurn(t *testing.T) {
	q, takes := countingQueue(func() bool { return false })
	q.turn = deletedTurn{}
	close(q.changed)
	start := time.Now()
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q?wait=60s", nil))
	if rec.Code != http.StatusNoContent || takes.Load() != 1 {
		t.Fatalf("status %d, %d takes", rec.Code, takes.Load())
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("answered after %v, not at once", d)
	}
}
