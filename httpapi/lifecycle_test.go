package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The refusals of the limits: a queue's own limit is 429 with
// Retry-After, the cluster's budget and a disk alarm are 507, an unknown
// queue is 404; the JSON names what refused.
func TestLimitStatuses(t *testing.T) {
	for _, c := range []struct {
		name   string
		err    error
		status int
		retry  string
		body   string
	}{
		{"queue limit", &LimitError{Err: ErrQueueFull, Limit: "max_messages", Queue: "q", Value: 100, Usage: 100, Request: 1},
			http.StatusTooManyRequests, "1",
			`{"error":"queue full: queue q max_messages is 100, 100 in use, 1 more asked","limit":"max_messages","queue":"q","value":100,"usage":100,"request":1}`},
		{"cluster bytes", &LimitError{Err: ErrStorageFull, Limit: "max_bytes", Value: 1000, Usage: 0, Request: 2000},
			http.StatusInsufficientStorage, "",
			`{"error":"insufficient storage: cluster max_bytes is 1000, 0 in use, 2000 more asked","limit":"max_bytes","value":1000,"usage":0,"request":2000}`},
		{"max queues", &LimitError{Err: ErrStorageFull, Limit: "max_queues", Value: 3, Usage: 3, Request: 1},
			http.StatusInsufficientStorage, "",
			`{"error":"insufficient storage: cluster max_queues is 3, 3 in use, 1 more asked","limit":"max_queues","value":3,"usage":3,"request":1}`},
		{"disk alarm", &AlarmError{Nodes: []uint64{2}}, http.StatusInsufficientStorage, "",
			`{"error":"insufficient storage: disk space alarm raised by nodes [2]; only what frees space is accepted","alarms":[2]}`},
		{"unknown queue", fmt.Errorf("%w: no such queue: q", ErrNotFound), http.StatusNotFound, "",
			`{"error":"not found: no such queue: q"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := &fakeQueue{enqueue: func(context.Context, string, string, []byte) (uint64, LogPosition, error) {
				return 0, LogPosition{}, c.err
			}}
			rec := serve(t, q, nil, httptest.NewRequest(http.MethodPut, "/queues/q", strings.NewReader("m")))
			if rec.Code != c.status || rec.Header().Get("Retry-After") != c.retry {
				t.Fatalf("status %d Retry-After %q, want %d %q", rec.Code, rec.Header().Get("Retry-After"), c.status, c.retry)
			}
			if got := strings.TrimSpace(rec.Body.String()); got != c.body {
				t.Fatalf("body\n%s\nwant\n%s", got, c.body)
			}
		})
	}
}

func fakeWith(l fakeLifecycle) *fakeQueue { return &fakeQueue{lifecycle: l} }

// A config change sets only the keys present; an empty object, a
// negative limit, an unknown key or a wrong type is a 400 that reaches
// nothing. The answer is the whole config, with the log position.
func TestConfigurePresence(t *testing.T) {
	var got *ConfigChange
	q := fakeWith(fakeLifecycle{configure: func(_ context.Context, _ string, ch ConfigChange) (QueueConfig, LogPosition, error) {
		got = &ch
		return QueueConfig{MaxDeliveries: 5, DeadLetterQueue: "d", MaxMessages: 7}, LogPosition{Index: 9, Term: 2}, nil
	}})
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodPut, "/queues/q/config", strings.NewReader(`{"max_messages":7}`)))
	if rec.Code != http.StatusOK || rec.Header().Get("Raft-Index") != "9" {
		t.Fatalf("status %d, index %q", rec.Code, rec.Header().Get("Raft-Index"))
	}
	if got.MaxMessages == nil || *got.MaxMessages != 7 || got.MaxBytes != nil || got.MaxDeliveries != nil || got.DeadLetterQueue != nil {
		t.Fatalf("change %+v: only max_messages should be present", got)
	}
	if b := strings.TrimSpace(rec.Body.String()); b != `{"max_deliveries":5,"dead_letter_queue":"d","max_messages":7,"max_bytes":0,"visibility_timeout_ms":0,"delay_ms":0,"receive_wait_ms":0,"max_message_size":0,"retention_ms":0,"content_dedup":false}` {
		t.Fatalf("body %s", b)
	}
	serve(t, q, nil, httptest.NewRequest(http.MethodPut, "/queues/q/config", strings.NewReader(`{"dead_letter_queue":"","max_bytes":0}`)))
	if got.DeadLetterQueue == nil || *got.DeadLetterQueue != "" || got.MaxBytes == nil || got.MaxMessages != nil {
		t.Fatalf("change %+v: zero values present must be set", got)
	}
	serve(t, q, nil, httptest.NewRequest(http.MethodPut, "/queues/q/config", strings.NewReader(`{"visibility_timeout_ms":5000,"content_dedup":true}`)))
	if got == nil || got.VisibilityTimeoutMS == nil || *got.VisibilityTimeoutMS != 5000 || got.ContentDedup == nil || !*got.ContentDedup || got.MaxBytes != nil {
		t.Fatalf("change %+v: the settings present must be set, alone", got)
	}
	for _, body := range []string{`{}`, `{"max_messages":-1}`, `{"max_bytes":-5}`, `{"max_size":1}`, `{"max_messages":"7"}`, ``,
		`{"retention_ms":-1}`, `{"receive_wait_ms":60001}`, `{"delay_ms":43200001}`, `{"visibility_timeout_ms":43200001}`} {
		got = nil
		rec := serve(t, q, nil, httptest.NewRequest(http.MethodPut, "/queues/q/config", strings.NewReader(body)))
		if rec.Code != http.StatusBadRequest || got != nil {
			t.Errorf("%q: status %d (called: %v), want 400", body, rec.Code, got != nil)
		}
	}
}

// GET /mgmt/limits shows usage and alarms ([] when none); PUT sets the
// keys present only, refusing an empty or negative change.
func TestLimitsRoutes(t *testing.T) {
	var got *LimitsChange
	q := fakeWith(fakeLifecycle{
		limits: func(context.Context) (ClusterLimits, error) {
			return ClusterLimits{MaxQueues: 10000, MaxBytes: 512 << 20, Queues: 2, Bytes: 300}, nil
		},
		setLimits: func(_ context.Context, ch LimitsChange) (ClusterLimits, LogPosition, error) {
			got = &ch
			return ClusterLimits{MaxQueues: 10000, MaxBytes: *ch.MaxBytes, Alarms: []uint64{3}}, LogPosition{Index: 4, Term: 1}, nil
		},
	})
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/mgmt/limits", nil))
	if b := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusOK || b != `{"max_queues":10000,"max_bytes":536870912,"queues":2,"bytes":300,"alarms":[]}` {
		t.Fatalf("GET: %d %s", rec.Code, b)
	}
	rec = serve(t, q, nil, httptest.NewRequest(http.MethodPut, "/mgmt/limits", strings.NewReader(`{"max_bytes":4096}`)))
	if b := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusOK || b != `{"max_queues":10000,"max_bytes":4096,"queues":0,"bytes":0,"alarms":[3]}` {
		t.Fatalf("PUT: %d %s", rec.Code, b)
	}
	if got.MaxQueues != nil || rec.Header().Get("Raft-Term") != "1" {
		t.Fatalf("change %+v, term %q", got, rec.Header().Get("Raft-Term"))
	}
	for _, body := range []string{`{}`, `{"max_queues":-1}`, `{"max_bytes":-1}`, `{"alarms":[]}`, `nope`} {
		got = nil
		rec := serve(t, q, nil, httptest.NewRequest(http.MethodPut, "/mgmt/limits", strings.NewReader(body)))
		if rec.Code != http.StatusBadRequest || got != nil {
			t.Errorf("%q: status %d, want 400", body, rec.Code)
		}
	}
}

// DELETE /mgmt/alarms/{id} clears that node's alarm and answers the
// limits after; a bad id is a 400 that reaches nothing.
func TestClearAlarmRoute(t *testing.T) {
	var cleared []uint64
	q := fakeWith(fakeLifecycle{clearAlarm: func(_ context.Context, node uint64) (ClusterLimits, LogPosition, error) {
		cleared = append(cleared, node)
		return ClusterLimits{MaxQueues: 10, MaxBytes: 100}, LogPosition{Index: 7, Term: 2}, nil
	}})
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodDelete, "/mgmt/alarms/3", nil))
	if b := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusOK || b != `{"max_queues":10,"max_bytes":100,"queues":0,"bytes":0,"alarms":[]}` ||
		rec.Header().Get("Raft-Index") != "7" {
		t.Fatalf("clear: %d %s", rec.Code, b)
	}
	for _, id := range []string{"0", "x", "-1", "18446744073709551616"} {
		if rec := serve(t, q, nil, httptest.NewRequest(http.MethodDelete, "/mgmt/alarms/"+id, nil)); rec.Code != http.StatusBadRequest {
			t.Errorf("id %q: %d", id, rec.Code)
		}
	}
	if len(cleared) != 1 || cleared[0] != 3 {
		t.Fatalf("cleared %v", cleared)
	}
}

// Delete is 204 with the log position, or 404; purge says how many it
// dropped.
func TestDeleteAndPurge(t *testing.T) {
	q := fakeWith(fakeLifecycle{
		deleteQueue: func(_ context.Context, queue string) (LogPosition, error) {
			if queue != "q" {
				return LogPosition{}, fmt.Errorf("%w: no such queue: %s", ErrNotFound, queue)
			}
			return LogPosition{Index: 5, Term: 1}, nil
		},
		purge: func(_ context.Context, queue string) (int, LogPosition, error) {
			if queue != "q" {
				return 0, LogPosition{}, fmt.Errorf("%w: no such queue: %s", ErrNotFound, queue)
			}
			return 3, LogPosition{Index: 6, Term: 1}, nil
		},
	})
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodDelete, "/queues/q", nil))
	if rec.Code != http.StatusNoContent || rec.Header().Get("Raft-Index") != "5" {
		t.Fatalf("delete: %d index %q", rec.Code, rec.Header().Get("Raft-Index"))
	}
	if rec := serve(t, q, nil, httptest.NewRequest(http.MethodDelete, "/queues/x", nil)); rec.Code != http.StatusNotFound {
		t.Fatalf("delete unknown: %d", rec.Code)
	}
	rec = serve(t, q, nil, httptest.NewRequest(http.MethodPost, "/queues/q/purge", nil))
	if b := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusOK || b != `{"queue":"q","purged":3}` || rec.Header().Get("Raft-Index") != "6" {
		t.Fatalf("purge: %d %s", rec.Code, b)
	}
	if rec := serve(t, q, nil, httptest.NewRequest(http.MethodPost, "/queues/x/purge", nil)); rec.Code != http.StatusNotFound {
		t.Fatalf("purge unknown: %d", rec.Code)
	}
}

// Peek shows text bodies as body, others as body_b64, with the enqueue
// time in RFC 3339; max defaults to DefaultPeek and must be 1 to MaxPeek.
func TestPeek(t *testing.T) {
	at := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	var asked int
	q := fakeWith(fakeLifecycle{peek: func(_ context.Context, _ string, max int) ([]Message, error) {
		asked = max
		return []Message{
			{ID: 3, ContentType: "text/plain", Body: "hi", Deliveries: 2, Enqueued: at},
			{ID: 4, ContentType: "application/x-bin", Body: "\xff\x00", Enqueued: at.Add(time.Second)},
		}, nil
	}})
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q/messages", nil))
	want := `{"messages":[{"id":3,"body":"hi","content_type":"text/plain","deliveries":2,"enqueued_at":"2026-12-01T20:00:00Z"},` +
		`{"id":4,"body_b64":"/wA=","content_type":"application/x-bin","deliveries":0,"enqueued_at":"2026-12-01T20:00:01Z"}]}`
	if b := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusOK || b != want || asked != DefaultPeek {
		t.Fatalf("peek: %d %s (max %d)", rec.Code, b, asked)
	}
	serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q/messages?max=1000", nil))
	if asked != 1000 {
		t.Fatalf("max=1000 asked %d", asked)
	}
	for _, max := range []string{"0", "1001", "x", "-1"} {
		asked = 0
		if rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q/messages?max="+max, nil)); rec.Code != http.StatusBadRequest || asked != 0 {
			t.Errorf("max=%s: %d", max, rec.Code)
		}
	}
	q.lifecycle.peek = func(context.Context, string, int) ([]Message, error) { return nil, nil }
	if b := strings.TrimSpace(serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q/messages", nil)).Body.String()); b != `{"messages":[]}` {
		t.Fatalf("empty peek %s", b)
	}
}

func TestStats(t *testing.T) {
	q := fakeWith(fakeLifecycle{stats: func(_ context.Context, queue string) (QueueStats, error) {
		if queue != "q" {
			return QueueStats{}, fmt.Errorf("%w: no such queue: %s", ErrNotFound, queue)
		}
		return QueueStats{Queue: "q", Depth: 1, Leased: 2, Delayed: 3, Bytes: 400, Keys: 1, OldestReadyAgeMS: 5000,
			Config: QueueConfig{MaxMessages: 10}, Totals: QueueTotals{Enqueued: 9, Popped: 1, Acked: 1, Purged: 1},
			CreatedAt: time.Unix(1700000000, 0).UTC(), ModifiedAt: time.Unix(1700000001, 0).UTC()}, nil
	}})
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/q/stats", nil))
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	want := `{"queue":"q","depth":1,"leased":2,"delayed":3,"bytes":400,"keys":1,"oldest_ready_age_ms":5000,` +
		`"config":{"max_deliveries":0,"dead_letter_queue":"","max_messages":10,"max_bytes":0,"visibility_timeout_ms":0,"delay_ms":0,"receive_wait_ms":0,"max_message_size":0,"retention_ms":0,"content_dedup":false},` +
		`"totals":{"enqueued":9,"popped":1,"acked":1,"dead_lettered":0,"purged":1,"expired":0},` +
		`"created_at":"2023-11-14T22:13:20Z","modified_at":"2023-11-14T22:13:21Z"}`
	if b := strings.TrimSpace(rec.Body.String()); b != want {
		t.Fatalf("stats\n%s\nwant\n%s", b, want)
	}
	if rec := serve(t, q, nil, httptest.NewRequest(http.MethodGet, "/queues/x/stats", nil)); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown: %d", rec.Code)
	}
}

// A long poll whose queue is deleted while it waits answers 204 at once,
// as at shutdown, with no log position.
func TestLongPollQueueDeleted(t *testing.T) {
	q := &fakeQueue{awaitErr: fmt.Errorf("wrapped: %w", ErrQueueDeleted)}
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/queues/q?wait=60s", nil),
		httptest.NewRequest(http.MethodPost, "/queues/q/leases?wait=60s", nil),
		httptest.NewRequest(http.MethodGet, "/queues/q?max=5&wait=60s", nil),
	} {
		rec := serve(t, q, nil, req)
		if rec.Code != http.StatusNoContent || rec.Header().Get("Raft-Index") != "" {
			t.Fatalf("%s %s: %d (Raft-Index %q)", req.Method, req.URL, rec.Code, rec.Header().Get("Raft-Index"))
		}
	}
}
