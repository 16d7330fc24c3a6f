package chaos

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
)

// Go's transport retries a GET whose reused connection breaks; when the
// retry is refused, the first attempt had still reached the server, so a
// pop's outcome is unknown, not failed.
func TestRetriedPopIsUnknown(t *testing.T) {
	var calls atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		// The server "applies" the pop, then dies before answering.
		srv.Listener.Close()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	hc := &http.Client{}
	if _, _, _, err := do(hc, http.MethodGet, srv.URL+"/queues/q", nil); err != nil {
		t.Fatal(err)
	}
	resp, body, written, err := do(hc, http.MethodGet, srv.URL+"/queues/q", nil)
	if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("the second pop should end refused on the transport's retry, got %v", err)
	}
	if out, detail := classify(resp, body, written, err, http.StatusOK); out != Unknown {
		t.Fatalf("outcome %s (%s), want unknown: the server read the request", out, detail)
	}
	// A request no server ever read is a definite failure.
	resp, body, written, err = do(hc, http.MethodGet, srv.URL+"/queues/q", nil)
	if out, _ := classify(resp, body, written, err, http.StatusOK); out != Fail {
		t.Fatalf("refused request: outcome %s, want fail", out)
	}
}

// A write refused by a limit, a disk alarm or backpressure definitely
// failed; any other 429 or 507 is an answer the checker reports.
func TestRefusalsFail(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		want   Outcome
		limit  string
		flag   bool // reported as an unexpected status
	}{
		{429, `{"error":"queue full: queue q0 max_messages is 20, 20 in use, 1 more asked","limit":"max_messages","queue":"q0","value":20,"usage":20,"request":1}`, Fail, "max_messages", false},
		{507, `{"error":"storage full: cluster max_bytes is 1000, 990 in use, 100 more asked","limit":"max_bytes","value":1000,"usage":990,"request":100}`, Fail, "max_bytes", false},
		{507, `{"error":"storage full: disk space alarm raised by nodes [2]","alarms":[2]}`, Fail, "alarm", false},
		{429, `{"error":"overloaded","outcome":"not_applied"}`, Fail, "", false},
		{429, `{"error":"too many waiters"}`, Fail, "", true},
		{507, `{"error":"?"}`, Fail, "", true},
	} {
		resp := &http.Response{StatusCode: c.status}
		out, detail := classify(resp, []byte(c.body), true, nil, http.StatusCreated)
		if out != c.want || refusedBy(resp, []byte(c.body)) != c.limit {
			t.Errorf("%d %s: outcome %s, limit %q; want %s, %q", c.status, c.body, out, refusedBy(resp, []byte(c.body)), c.want, c.limit)
		}
		r := &Report{}
		r.clientError(Op{Kind: "enqueue", Outcome: out, Detail: detail})
		if (r.ClientErrors > 0) != c.flag {
			t.Errorf("%d %s: reported as unexpected: %v, want %v", c.status, c.body, r.ClientErrors > 0, c.flag)
		}
	}
}
