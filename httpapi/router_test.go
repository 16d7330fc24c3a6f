package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

type fakeQueue struct {
	enqueue func(ctx context.Context, queue, ct string, body []byte) (uint64, LogPosition, error)
	dequeue func(ctx context.Context, queue string) (Message, bool, LogPosition, error)
	queues  func(ctx context.Context) ([]QueueInfo, error)
	// delivery routes
	enqueueOpts func(ctx context.Context, queue, ct string, body []byte, opts EnqueueOptions) (Enqueued, LogPosition, error)
	lease       func(ctx context.Context, queue string, ttl time.Duration) (Lease, bool, LogPosition, error)
	settle      func(op, queue string, id uint64, token string, d time.Duration) error
	changed     chan struct{}    // closed: AwaitReady gives turns
	stopping    chan struct{}    // closed: AwaitReady says ErrStopping
	ready       bool             // HasReady's answer
	awaiting    chan struct{}    // if set, AwaitReady sends on it first
	awaitErr    error            // if set, AwaitReady's answer
	turn        Turn             // if set, the turn AwaitReady gives
	batch       []Message        // EnqueueBatch appends when non-nil; PopMany pops
	defaults    QueueConfig      // what Defaults answers
	defaultsN   int              // how often Defaults was asked
	batchOpts   []EnqueueOptions // the options of the messages EnqueueBatch was given
	lifecycle   fakeLifecycle
}

// fakeLifecycle holds the fakes of the config, lifecycle and limits routes.
type fakeLifecycle struct {
	configure   func(ctx context.Context, queue string, ch ConfigChange) (QueueConfig, LogPosition, error)
	deleteQueue func(ctx context.Context, queue string) (LogPosition, error)
	purge       func(ctx context.Context, queue string) (int, LogPosition, error)
	peek        func(ctx context.Context, queue string, max int) ([]Message, error)
	stats       func(ctx context.Context, queue string) (QueueStats, error)
	limits      func(ctx context.Context) (ClusterLimits, error)
	setLimits   func(ctx context.Context, ch LimitsChange) (ClusterLimits, LogPosition, error)
	clearAlarm  func(ctx context.Context, node uint64) (ClusterLimits, LogPosition, error)
}

func (f *fakeQueue) Enqueue(ctx context.Context, q, ct string, b []byte, opts EnqueueOptions) (Enqueued, LogPosition, error) {
	if f.enqueueOpts != nil {
		return f.enqueueOpts(ctx, q, ct, b, opts)
	}
	id, pos, err := f.enqueue(ctx, q, ct, b)
	return Enqueued{ID: id}, pos, err
}
func (f *fakeQueue) Dequeue(ctx context.Context, q string) (Message, bool, LogPosition, error) {
	return f.dequeue(ctx, q)
}
func (f *fakeQueue) Queues(ctx context.Context) ([]QueueInfo, error) { return f.queues(ctx) }
func (f *fakeQueue) EnqueueBatch(ctx context.Context, q string, ms []NewMessage) ([]Enqueued, LogPosition, error) {
	ids := make([]Enqueued, len(ms))
	for i, m := range ms {
		ids[i] = Enqueued{ID: uint64(i + 1)}
		f.batchOpts = append(f.batchOpts, m.Options)
		if f.batch != nil {
			f.batch = append(f.batch, Message{ContentType: m.ContentType, Body: m.Body, Group: m.Options.Group, Attributes: m.Options.Attributes})
		}
	}
	return ids, LogPosition{}, nil
}
func (f *fakeQueue) PopMany(ctx context.Context, q string, max int) ([]Message, LogPosition, error) {
	out := f.batch[:min(max, len(f.batch))]
	f.batch = f.batch[len(out):]
	return out, LogPosition{}, nil
}
func (f *fakeQueue) Lease(ctx context.Context, q string, ttl time.Duration) (Lease, bool, LogPosition, error) {
	return f.lease(ctx, q, ttl)
}
func (f *fakeQueue) Ack(_ context.Context, q string, id uint64, token string) (LogPosition, error) {
	return LogPosition{}, f.settle("ack", q, id, token, 0)
}
func (f *fakeQueue) Release(_ context.Context, q string, id uint64, token string, d time.Duration) (LogPosition, error) {
	return LogPosition{}, f.settle("release", q, id, token, d)
}
func (f *fakeQueue) Extend(_ context.Context, q string, id uint64, token string, ttl time.Duration) (time.Time, LogPosition, error) {
	return time.Unix(1700000000, 0).Add(ttl), LogPosition{}, f.settle("extend", q, id, token, ttl)
}
func (f *fakeQueue) Configure(ctx context.Context, q string, ch ConfigChange) (QueueConfig, LogPosition, error) {
	return f.lifecycle.configure(ctx, q, ch)
}
func (f *fakeQueue) DeleteQueue(ctx context.Context, q string) (LogPosition, error) {
	return f.lifecycle.deleteQueue(ctx, q)
}
func (f *fakeQueue) Purge(ctx context.Context, q string) (int, LogPosition, error) {
	return f.lifecycle.purge(ctx, q)
}
func (f *fakeQueue) Peek(ctx context.Context, q string, max int) ([]Message, error) {
	return f.lifecycle.peek(ctx, q, max)
}
func (f *fakeQueue) Stats(ctx context.Context, q string) (QueueStats, error) {
	return f.lifecycle.stats(ctx, q)
}
func (f *fakeQueue) Limits(ctx context.Context) (ClusterLimits, error) {
	return f.lifecycle.limits(ctx)
}
func (f *fakeQueue) SetLimits(ctx context.Context, ch LimitsChange) (ClusterLimits, LogPosition, error) {
	return f.lifecycle.setLimits(ctx, ch)
}
func (f *fakeQueue) ClearAlarm(ctx context.Context, node uint64) (ClusterLimits, LogPosition, error) {
	return f.lifecycle.clearAlarm(ctx, node)
}

// AwaitReady gives a turn when changed is closed, ErrStopping once stopping
// is closed.
func (f *fakeQueue) AwaitReady(ctx context.Context, _ string, _ int) (Turn, error) {
	if f.awaiting != nil {
		f.awaiting <- struct{}{}
	}
	if f.awaitErr != nil {
		return nil, f.awaitErr
	}
	select {
	case <-f.changed:
		if f.turn != nil {
			return f.turn, nil
		}
		return doneFunc(func() {}), nil
	case <-f.stopping:
		return nil, ErrStopping
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (f *fakeQueue) HasReady(context.Context, string) (bool, error) { return f.ready, nil }
func (f *fakeQueue) LeaseMany(ctx context.Context, q string, ttl time.Duration, max int) ([]Lease, LogPosition, error) {
	var out []Lease
	for len(out) < max {
		l, found, _, err := f.lease(ctx, q, ttl)
		if err != nil || !found {
			return out, LogPosition{}, err
		}
		out = append(out, l)
	}
	return out, LogPosition{}, nil
}
func (f *fakeQueue) Defaults(string) QueueConfig { f.defaultsN++; return f.defaults }
func (f *fakeQueue) AllStats(ctx context.Context, after string, limit int) ([]QueueStats, bool, error) {
	if f.lifecycle.stats == nil {
		return nil, false, nil
	}
	st, err := f.lifecycle.stats(ctx, "q")
	return []QueueStats{st}, false, err
}

type doneFunc func()

func (d doneFunc) Done()         { d() }
func (d doneFunc) Deleted() bool { return false }

type fakeCluster struct {
	nodes    func(ctx context.Context) (Nodes, error)
	add      func(ctx context.Context, spec NodeSpec) (Node, error)
	remove   func(ctx context.Context, id uint64) (Nodes, error)
	promote  func(ctx context.Context, id uint64) (Node, error)
	transfer func(ctx context.Context, id uint64) (Nodes, error)
}

func (f *fakeCluster) Nodes(ctx context.Context) (Nodes, error) { return f.nodes(ctx) }
func (f *fakeCluster) LocalState() (LocalState, error) {
	return LocalState{ID: 2, Leader: 1, Applied: 42, Hash: "c0ffee"}, nil
}
func (f *fakeCluster) Counters() map[string]uint64 { return map[string]uint64{"readys": 7} }
func (f *fakeCluster) AddNode(ctx context.Context, spec NodeSpec) (Node, error) {
	return f.add(ctx, spec)
}
func (f *fakeCluster) RemoveNode(ctx context.Context, id uint64) (Nodes, error) {
	return f.remove(ctx, id)
}
func (f *fakeCluster) PromoteNode(ctx context.Context, id uint64) (Node, error) {
	return f.promote(ctx, id)
}
func (f *fakeCluster) TransferLeader(ctx context.Context, id uint64) (Nodes, error) {
	return f.transfer(ctx, id)
}

func serve(t *testing.T, q Queue, c Cluster, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	NewRouter(q, c, zap.NewNop(), Options{MaxMessageBytes: 16}).ServeHTTP(rec, req)
	return rec
}

func errorMessage(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("status %d: body %q is not a JSON error", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error content type %q", ct)
	}
	return e.Error
}

func TestEnqueue(t *testing.T) {
	var got struct {
		queue, ct string
		body      []byte
	}
	q := &fakeQueue{enqueue: func(_ context.Context, queue, ct string, body []byte) (uint64, LogPosition, error) {
		got.queue, got.ct, got.body = queue, ct, body
		return 7, LogPosition{Index: 42, Term: 3}, nil
	}}
	for _, method := range []string{http.MethodPut, http.MethodPost} {
		req := httptest.NewRequest(method, "/queues/jobs", strings.NewReader("\x00raw\xff"))
		rec := serve(t, q, nil, req)
		if rec.Code != http.StatusCreated {
			t.Fatalf("%s: status %d %s", method, rec.Code, rec.Body)
		}
		if rec.Body.String() != `{"queue":"jobs","id":7}`+"\n" {
			t.Fatalf("body %q", rec.Body)
		}
		h := rec.Header()
		if h.Get("Location") != "/queues/jobs/messages/7" || h.Get("Raft-Index") != "42" || h.Get("Raft-Term") != "3" {
			t.Fatalf("headers %v", h)
		}
		if got.queue != "jobs" || got.ct != "application/octet-stream" || string(got.body) != "\x00raw\xff" {
			t.Fatalf("stored %+v", got)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/queues/jobs", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	serve(t, q, nil, req)
	if got.ct != "application/json" {
		t.Fatalf("content type stored as %q", got.ct)
	}
}

func TestEnqueueTooLarge(t *testing.T) {
	called := false
	q := &fakeQueue{enqueue: func(context.Context, string, string, []byte) (uint64, LogPosition, error) {
		called = true
		return 1, LogPosition{}, nil
	}}
	exact := serve(t, q, nil, httptest.NewRequest(http.MethodPut, "/queues/q", strings.NewReader(strings.Repeat("x", 16))))
	if exact.Code != http.StatusCreated || !called {
		t.Fatalf("a body of exactly the limit was refused: %d", exact.Code)
	}
	called = false
	withLength := httptest.NewRequest(http.MethodPut, "/queues/q", strings.NewReader(strings.Repeat("x", 17)))
	// No Content-Length: the body arrives chunked and is cut off while read.
	chunked := httptest.NewRequest(http.MethodPut, "/queues/q", io.MultiReader(strings.NewReader(strings.Repeat("x", 17))))
	chunked.ContentLength = -1
	for name, req := range map[string]*http.Request{"content-length": withLength, "chunked": chunked} {
		rec := serve(t, q, nil, req)
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: status %d", name, rec.Code)
		}
		errorMessage(t, rec)
		if called {
			t.Fatalf("%s: an oversized message was stored", name)
		}
	}
}

func TestDequeue(t *testing.T) {
	found := true
	q := &fakeQueue{dequeue: func(_ context.Context, queue string) (Message, bool, LogPosition, error) {
		return Message{ID: 9, ContentType: "text/plain", Body: "hello"}, found, LogPosition{Index: 5, Term: 2}, nil
	}}
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/jobs", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "hello" {
		t.Fatalf("status %d body %q", rec.Code, rec.Body)
	}
	if h := rec.Header(); h.Get("Message-Id") != "9" || h.Get("Content-Type") != "text/plain" || h.Get("Raft-Index") != "5" {
		t.Fatalf("headers %v", h)
	}
	found = false
	rec = serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/jobs", nil))
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Fatalf("empty: status %d body %q", rec.Code, rec.Body)
	}
}

func TestListAndNodes(t *testing.T) {
	q := &fakeQueue{queues: func(context.Context) ([]QueueInfo, error) {
		return []QueueInfo{{Name: "a", Depth: 1, Leased: 2, Delayed: 3}, {Name: "b"}}, nil
	}}
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues", nil))
	if rec.Body.String() != `{"queues":[{"name":"a","depth":1,"leased":2,"delayed":3},{"name":"b","depth":0,"leased":0,"delayed":0}]}`+"\n" {
		t.Fatalf("list %q", rec.Body)
	}
	q.queues = func(context.Context) ([]QueueInfo, error) { return nil, nil }
	if rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues", nil)); rec.Body.String() != `{"queues":[]}`+"\n" {
		t.Fatalf("empty list %q", rec.Body)
	}
	c := &fakeCluster{nodes: func(context.Context) (Nodes, error) {
		return Nodes{Leader: 1, Nodes: []Node{{ID: 1, PeerURLs: []string{"http://a"}, APIURL: "http://b", IsLeader: true}}}, nil
	}}
	rec = serve(t, q, c, httptest.NewRequest(http.MethodGet, "/mgmt/nodes", nil))
	if rec.Body.String() != `{"leader":1,"nodes":[{"id":1,"peer_urls":["http://a"],"api_url":"http://b","learner":false,"is_leader":true}]}`+"\n" {
		t.Fatalf("nodes %q", rec.Body)
	}
}

func TestErrors(t *testing.T) {
	unavailable := fmt.Errorf("%w: no leader", ErrUnavailable)
	invalid := fmt.Errorf("%w: bad name", ErrInvalid)
	q := &fakeQueue{
		enqueue: func(context.Context, string, string, []byte) (uint64, LogPosition, error) {
			return 0, LogPosition{}, unavailable
		},
		dequeue: func(context.Context, string) (Message, bool, LogPosition, error) {
			return Message{}, false, LogPosition{}, invalid
		},
		queues: func(context.Context) ([]QueueInfo, error) { return nil, io.ErrUnexpectedEOF },
	}
	longCT := httptest.NewRequest(http.MethodPut, "/queues/q", nil)
	longCT.Header.Set("Content-Type", strings.Repeat("a", MaxContentTypeLen+1))
	ctrlCT := httptest.NewRequest(http.MethodPut, "/queues/q", nil)
	ctrlCT.Header["Content-Type"] = []string{"text/plain\x7f"}
	cases := []struct {
		req    *http.Request
		status int
	}{
		{httptest.NewRequest(http.MethodPut, "/queues/q", bytes.NewReader(nil)), http.StatusServiceUnavailable},
		{httptest.NewRequest(http.MethodGet, "/queues/q", nil), http.StatusBadRequest},
		{httptest.NewRequest(http.MethodGet, "/queues", nil), http.StatusInternalServerError},
		{httptest.NewRequest(http.MethodPatch, "/queues/q", nil), http.StatusMethodNotAllowed},
		{httptest.NewRequest(http.MethodPut, "/queues/q/stats", nil), http.StatusMethodNotAllowed},
		{httptest.NewRequest(http.MethodGet, "/queues/q/purge", nil), http.StatusMethodNotAllowed},
		{httptest.NewRequest(http.MethodDelete, "/mgmt/limits", nil), http.StatusMethodNotAllowed},
		{httptest.NewRequest(http.MethodGet, "/mgmt/alarms/3", nil), http.StatusMethodNotAllowed},
		{httptest.NewRequest(http.MethodPatch, "/mgmt/nodes", nil), http.StatusMethodNotAllowed},
		{httptest.NewRequest(http.MethodGet, "/mgmt/leader", nil), http.StatusMethodNotAllowed},
		{httptest.NewRequest(http.MethodGet, "/mgmt/nope", nil), http.StatusNotFound},
		{httptest.NewRequest(http.MethodPost, "/queues", nil), http.StatusMethodNotAllowed},
		{httptest.NewRequest(http.MethodGet, "/nope", nil), http.StatusNotFound},
		{httptest.NewRequest(http.MethodGet, "/queues/a/b", nil), http.StatusNotFound},
		{longCT, http.StatusBadRequest},
		{ctrlCT, http.StatusBadRequest},
	}
	for _, c := range cases {
		rec := serve(t, q, nil, c.req)
		if rec.Code != c.status {
			t.Errorf("%s %s: status %d, want %d", c.req.Method, c.req.URL.Path, rec.Code, c.status)
			continue
		}
		errorMessage(t, rec)
		if c.status == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After")
		}
	}
}

// A failed write's 503 tells a client whether it may safely retry.
func TestWriteOutcome(t *testing.T) {
	for _, c := range []struct {
		err     error
		status  int
		outcome string
	}{
		{fmt.Errorf("%w: %w: no leader", ErrUnavailable, ErrNotApplied), http.StatusServiceUnavailable, "not_applied"},
		{fmt.Errorf("%w: deadline", ErrUnavailable), http.StatusServiceUnavailable, "unknown"},
		{fmt.Errorf("%w: %w: backlog", ErrOverloaded, ErrNotApplied), http.StatusTooManyRequests, "not_applied"},
	} {
		q := &fakeQueue{
			enqueue: func(context.Context, string, string, []byte) (uint64, LogPosition, error) {
				return 0, LogPosition{}, c.err
			},
			dequeue: func(context.Context, string) (Message, bool, LogPosition, error) {
				return Message{}, false, LogPosition{}, c.err
			},
		}
		for _, req := range []*http.Request{
			httptest.NewRequest(http.MethodPost, "/queues/q", strings.NewReader("x")),
			httptest.NewRequest(http.MethodGet, "/queues/q", nil),
		} {
			rec := serve(t, q, nil, req)
			var body struct{ Error, Outcome string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != c.status || rec.Header().Get("Retry-After") != "1" {
				t.Fatalf("%s: status %d body %q", req.Method, rec.Code, rec.Body)
			}
			if body.Outcome != c.outcome {
				t.Errorf("%s with %v: outcome %q, want %q", req.Method, c.err, body.Outcome, c.outcome)
			}
		}
	}
}

func TestDebugState(t *testing.T) {
	rec := serve(t, nil, &fakeCluster{}, httptest.NewRequest(http.MethodGet, "/debug/state", nil))
	var st LocalState
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("status %d body %q", rec.Code, rec.Body)
	}
	if st != (LocalState{ID: 2, Leader: 1, Applied: 42, Hash: "c0ffee"}) {
		t.Errorf("state %+v", st)
	}
}

func TestDebugCounters(t *testing.T) {
	rec := serve(t, nil, &fakeCluster{}, httptest.NewRequest(http.MethodGet, "/debug/counters", nil))
	if b := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusOK || b != `{"readys":7}` {
		t.Fatalf("status %d body %s", rec.Code, b)
	}
}
