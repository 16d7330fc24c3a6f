package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
)

// nopMetrics stands for the Prometheus metrics: the benchmarks measure the
// router's own cost.
type nopMetrics struct{}

func (nopMetrics) Request(string, string, int, time.Duration) {}
func (nopMetrics) Refused(string, string)                     {}

// The router's CPU for one single-message enqueue and one pop, the
// requests a synchronous producer and consumer send (what the node adds to
// Go's HTTP server; the queue behind it answers at once).
func BenchmarkEnqueueRoute(b *testing.B) {
	q := &fakeQueue{enqueue: func(context.Context, string, string, []byte) (uint64, LogPosition, error) {
		return 42, LogPosition{Index: 1234, Term: 2}, nil
	}}
	h := NewRouter(q, nil, zap.NewNop(), Options{MaxMessageBytes: 1 << 20, RequestTimeout: 5 * time.Second, Metrics: nopMetrics{}})
	body := bytes.Repeat([]byte("x"), 256)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/queues/bench", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkDequeueRoute(b *testing.B) {
	body := string(bytes.Repeat([]byte("x"), 256))
	q := &fakeQueue{dequeue: func(context.Context, string) (Message, bool, LogPosition, error) {
		return Message{ID: 42, Body: body, ContentType: defaultContentType, Enqueued: time.Unix(1700000000, 0)}, true, LogPosition{Index: 1234, Term: 2}, nil
	}}
	h := NewRouter(q, nil, zap.NewNop(), Options{MaxMessageBytes: 1 << 20, RequestTimeout: 5 * time.Second, Metrics: nopMetrics{}})
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/queues/bench", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
