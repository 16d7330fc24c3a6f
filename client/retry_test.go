package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

var fast = RetryPolicy{Attempts: 5, Base: time.Millisecond, Max: 2 * time.Millisecond}

// node is a fake raftq node answering from a script, one answer per
// request, recording what it was asked.
type node struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	keys    []string
	n       int
}

func (f *node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
	a := f.answers[min(f.n, len(f.answers)-1)]
	f.n++
	a(w)
}

func status(code int, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		w.Write([]byte(body))
	}
}

var unknown = status(503, `{"error":"unavailable: deadline","outcome":"unknown"}`)

func serveFake(t *testing.T, f *node) string {
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return s.URL
}

// An enqueue whose outcome is unknown is retried with the same key, on
// the next node; a pop whose outcome is unknown is not retried at all.
func TestRetriesFollowOutcomes(t *testing.T) {
	a := &node{answers: []func(http.ResponseWriter){unknown}}
	b := &node{answers: []func(http.ResponseWriter){status(201, `{"id":7}`)}}
	c, _ := New([]string{serveFake(t, a), serveFake(t, b)}, WithRetry(fast))
	id, err := c.Enqueue(context.Background(), "q", []byte("x"))
	if err != nil || id != 7 || len(a.keys) != 1 || len(b.keys) != 1 || a.keys[0] != b.keys[0] || a.keys[0] == "" {
		t.Fatalf("enqueue: %d %v; keys %v then %v", id, err, a.keys, b.keys)
	}
	pop := &node{answers: []func(http.ResponseWriter){unknown}}
	c, _ = New([]string{serveFake(t, pop)}, WithRetry(fast))
	if _, err := c.Dequeue(context.Background(), "q", 0); !errors.Is(err, ErrUnavailable) || pop.n != 1 {
		t.Fatalf("pop: %v after %d tries, want one try", err, pop.n)
	}
	pop = &node{answers: []func(http.ResponseWriter){status(503, `{"error":"no leader","outcome":"not_applied"}`), status(204, "")}}
	c, _ = New([]string{serveFake(t, pop)}, WithRetry(fast))
	if m, err := c.Dequeue(context.Background(), "q", 0); err != nil || m != nil || pop.n != 2 {
		t.Fatalf("a pop not applied is retried: %v %v after %d tries", m, err, pop.n)
	}
}

// A refused connection moves on to the next node; limits are returned at
// once unless WithWaitWhenFull.
func TestRetriesConnectionsAndLimits(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	live := &node{answers: []func(http.ResponseWriter){status(200, `{"queues":[]}`)}}
	c, _ := New([]string{deadURL, serveFake(t, live)}, WithRetry(fast))
	if _, err := c.Queues(context.Background()); err != nil || live.n != 1 {
		t.Fatalf("queues: %v (%d on the live node)", err, live.n)
	}
	full := status(429, `{"error":"queue full","limit":"max_messages","queue":"q"}`)
	f := &node{answers: []func(http.ResponseWriter){full, full, status(201, `{"id":1}`)}}
	c, _ = New([]string{serveFake(t, f)}, WithRetry(fast))
	var e *Error
	if _, err := c.Enqueue(context.Background(), "q", nil); !errors.Is(err, ErrQueueFull) || !errors.As(err, &e) || e.Limit != "max_messages" || f.n != 1 {
		t.Fatalf("full: %v after %d", err, f.n)
	}
	f.n = 0
	c, _ = New([]string{serveFake(t, f)}, WithRetry(fast), WithWaitWhenFull())
	if id, err := c.Enqueue(context.Background(), "q", nil); err != nil || id != 1 || f.n != 3 {
		t.Fatalf("waiting when full: %d %v after %d", id, err, f.n)
	}
}

// An ack whose first answer was lost and whose retry finds the message
// gone has acked it.
func TestAckAfterUnknown(t *testing.T) {
	f := &node{answers: []func(http.ResponseWriter){unknown, status(404, `{"error":"no such message"}`)}}
	c, _ := New([]string{serveFake(t, f)}, WithRetry(fast))
	if err := c.Ack(context.Background(), &Lease{Message: Message{ID: 1}, Queue: "q", Token: "t"}); err != nil || f.n != 2 {
		t.Fatalf("ack: %v after %d", err, f.n)
	}
	f = &node{answers: []func(http.ResponseWriter){status(404, `{"error":"no such message"}`)}}
	c, _ = New([]string{serveFake(t, f)}, WithRetry(fast))
	if err := c.Ack(context.Background(), &Lease{Message: Message{ID: 1}, Queue: "q", Token: "t"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a plain 404: %v", err)
	}
}

func TestNewChecks(t *testing.T) {
	for _, eps := range [][]string{nil, {"localhost:1"}, {"ftp://h:1"}} {
		if _, err := New(eps); err == nil {
			t.Errorf("%v accepted", eps)
		}
	}
	if _, err := New([]string{"http://h:1"}, WithTLS("", "cert", "")); err == nil {
		t.Error("a certificate without a key accepted")
	}
	if _, err := New([]string{"http://h:1"}, WithRetry(RetryPolicy{})); err == nil {
		t.Error("an empty retry policy accepted")
	}
}

// A pop whose connection breaks after it was sent is not sent again,
// neither by the client nor by Go's transport (which resends a GET on a
// reused connection that broke): the node may have applied it.
func TestPopNotResent(t *testing.T) {
	var mu sync.Mutex
	pops := 0
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/queues" {
			w.Write([]byte(`{"queues":[]}`))
			return
		}
		mu.Lock()
		pops++
		mu.Unlock()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close() // applied, then the answer lost
	}))
	defer s.Close()
	c, _ := New([]string{s.URL}, WithRetry(fast))
	c.Queues(context.Background()) // a kept-alive connection
	if _, err := c.Dequeue(context.Background(), "q", 0); err == nil {
		t.Fatal("a pop whose answer was lost succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if pops != 1 {
		t.Fatalf("the pop was sent %d times", pops)
	}
}

// Backpressure (429 without a limit) is returned at once by default; with
// WithWaitWhenFull refusals are waited out past the attempts, until the
// context ends.
func TestOverloadedAndWaiting(t *testing.T) {
	busy := status(429, `{"error":"overloaded","outcome":"not_applied"}`)
	f := &node{answers: []func(http.ResponseWriter){busy, status(201, `{"id":3}`)}}
	c, _ := New([]string{serveFake(t, f)}, WithRetry(fast))
	if _, err := c.Enqueue(context.Background(), "q", nil); !errors.Is(err, ErrOverloaded) || f.n != 1 {
		t.Fatalf("overloaded: %v after %d", err, f.n)
	}
	full := status(429, `{"error":"queue full","limit":"max_messages"}`)
	answers := make([]func(http.ResponseWriter), 12) // more than fast's 5 attempts
	for i := range answers {
		answers[i] = full
	}
	f = &node{answers: append(answers, status(201, `{"id":4}`))}
	c, _ = New([]string{serveFake(t, f)}, WithRetry(fast), WithWaitWhenFull())
	if id, err := c.Enqueue(context.Background(), "q", nil); err != nil || id != 4 {
		t.Fatalf("waiting past the attempts: %d %v after %d", id, err, f.n)
	}
	f = &node{answers: []func(http.ResponseWriter){full}}
	c, _ = New([]string{serveFake(t, f)}, WithRetry(fast), WithWaitWhenFull())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Enqueue(ctx, "q", nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("waiting until the context ends: %v", err)
	}
}

// A batch of acks retried after a lost answer takes the items that find
// their message gone as acked.
func TestAckBatchAfterUnknown(t *testing.T) {
	f := &node{answers: []func(http.ResponseWriter){unknown, status(200, `{"results":[{"id":1,"status":404,"error":"gone"},{"id":2,"status":409,"error":"lease lost"}]}`)}}
	c, _ := New([]string{serveFake(t, f)}, WithRetry(fast))
	errs, err := c.AckBatch(context.Background(), "q", []Lease{{Message: Message{ID: 1}, Token: "a"}, {Message: Message{ID: 2}, Token: "b"}})
	if err != nil || errs[0] != nil || !errors.Is(errs[1], ErrLeaseLost) {
		t.Fatalf("ack batch: %v %v", errs, err)
	}
	if errs, err := c.AckBatch(context.Background(), "q", nil); err != nil || errs != nil || f.n != 2 {
		t.Fatalf("an empty batch is sent: %v %v", errs, err)
	}
}
