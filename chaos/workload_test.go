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
