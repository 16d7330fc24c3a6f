package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// POST /queues/{q}/acks and /releases settle each item as its own request
// would, answering every item's result in order; a bad item refuses the
// whole request before anything is settled.
func TestSettleBatches(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	q := &fakeQueue{settle: func(op, queue string, id uint64, token string, d time.Duration) error {
		mu.Lock()
		calls = append(calls, fmt.Sprintf("%s %s %d %s %v", op, queue, id, token, d))
		mu.Unlock()
		switch token {
		case "lost":
			return fmt.Errorf("%w: lease lost", ErrConflict)
		case "unknown":
			return fmt.Errorf("%w: timed out", ErrUnavailable)
		}
		return nil
	}}
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodPost, "/queues/jobs/acks",
		strings.NewReader(`{"acks":[{"id":1,"lease":"a"},{"id":2,"lease":"lost"},{"id":3,"lease":"unknown"}]}`)))
	var out struct{ Results []settleResult }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("acks: %d %s", rec.Code, rec.Body)
	}
	want := []settleResult{{ID: 1, Status: 204}, {ID: 2, Status: 409, Error: "conflict: lease lost"}, {ID: 3, Status: 503, Error: "unavailable: timed out", Outcome: "unknown"}}
	if fmt.Sprint(out.Results) != fmt.Sprint(want) {
		t.Fatalf("results %+v, want %+v", out.Results, want)
	}
	if len(calls) != 3 || !strings.HasPrefix(calls[0], "ack jobs") {
		t.Fatalf("calls %v", calls)
	}
	calls = nil
	rec = serve(t, q, nil, httptest.NewRequest(http.MethodPost, "/queues/jobs/releases",
		strings.NewReader(`{"releases":[{"id":4,"lease":"b","delay":"2s"},{"id":5,"lease":"c"}]}`)))
	if rec.Code != http.StatusOK || len(calls) != 2 || !strings.Contains(strings.Join(calls, ";"), "release jobs 4 b 2s") {
		t.Fatalf("releases: %d %s, calls %v", rec.Code, rec.Body, calls)
	}
	many := `{"acks":[` + strings.Repeat(`{"id":1,"lease":"a"},`, MaxSettleBatch) + `{"id":1,"lease":"a"}]}`
	for _, bad := range []struct{ path, body string }{
		{"/queues/jobs/acks", `{"acks":[]}`},
		{"/queues/jobs/acks", many},
		{"/queues/jobs/acks", `{"acks":[{"id":1,"lease":"a"},{"id":0,"lease":"a"}]}`},
		{"/queues/jobs/acks", `{"acks":[{"id":1,"lease":""}]}`},
		{"/queues/jobs/acks", `{"acks":[{"id":1,"lease":"a","delay":"1s"}]}`},
		{"/queues/jobs/acks", `{"acks":[{"id":1,"lease":"a","extra":1}]}`},
		{"/queues/jobs/acks", `{"releases":[{"id":1,"lease":"a"}]}`},
		{"/queues/jobs/acks", `{"acks":[{"id":1,"lease":"a"}],"more":[]}`},
		{"/queues/jobs/releases", `{"releases":[{"id":1,"lease":"a","delay":"forever"}]}`},
		{"/queues/jobs/releases", `nope`},
	} {
		calls = nil
		rec := serve(t, q, nil, httptest.NewRequest(http.MethodPost, bad.path, strings.NewReader(bad.body)))
		if rec.Code != http.StatusBadRequest || len(calls) != 0 {
			t.Errorf("%s %.60s: %d, %d settled", bad.path, bad.body, rec.Code, len(calls))
			continue
		}
		errorMessage(t, rec)
	}
}
