package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func mgmtRequest(method, path, body string) *http.Request {
	return httptest.NewRequest(method, path, strings.NewReader(body))
}

func TestAddNode(t *testing.T) {
	var got NodeSpec
	c := &fakeCluster{add: func(_ context.Context, spec NodeSpec) (Node, error) {
		got = spec
		return Node{ID: spec.ID, PeerURLs: []string{spec.PeerURL}, Learner: spec.Learner}, nil
	}}
	rec := serve(t, nil, c, mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":4,"peer_url":"http://127.0.0.1:42379","learner":true}`))
	if rec.Code != http.StatusCreated || got != (NodeSpec{ID: 4, PeerURL: "http://127.0.0.1:42379", Learner: true}) {
		t.Fatalf("status %d, spec %+v, body %s", rec.Code, got, rec.Body)
	}
	if loc := rec.Header().Get("Location"); loc != "/mgmt/nodes/4" {
		t.Errorf("Location %q", loc)
	}
}

// Every malformed request is refused before the cluster is asked.
func TestMgmtBadInput(t *testing.T) {
	c := &fakeCluster{} // any call would panic on a nil func
	for _, r := range []*http.Request{
		mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":4,"peer_url":`),
		mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":"four","peer_url":"http://h:1"}`),
		mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":0,"peer_url":"http://h:1"}`),
		mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":-1,"peer_url":"http://h:1"}`),
		mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":4,"peer_url":"h:1"}`),
		mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":4}`),
		mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":4,"peer_url":"http://h:1","extra":1}`),
		mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":4,"peer_url":"http://h:1"} {}`),
		mgmtRequest(http.MethodDelete, "/mgmt/nodes/x", ""),
		mgmtRequest(http.MethodDelete, "/mgmt/nodes/0", ""),
		mgmtRequest(http.MethodPost, "/mgmt/nodes/abc/promote", ""),
		mgmtRequest(http.MethodPost, "/mgmt/leader", `{"id":"2"}`),
		mgmtRequest(http.MethodPost, "/mgmt/leader", `{}`),
	} {
		rec := serve(t, nil, c, r)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s %s: status %d, want 400 (%s)", r.Method, r.URL, rec.Code, rec.Body)
			continue
		}
		errorMessage(t, rec)
	}
}

// Errors from the cluster map to statuses, and a failed change says
// whether it may have happened.
func TestMgmtErrors(t *testing.T) {
	for _, c := range []struct {
		err     error
		status  int
		outcome string
	}{
		{fmt.Errorf("%w: no member 9", ErrNotFound), http.StatusNotFound, ""},
		{fmt.Errorf("%w: id 2 is a member", ErrConflict), http.StatusConflict, ""},
		{fmt.Errorf("%w: %w: 1 of 3 voters active", ErrUnavailable, ErrNotApplied), http.StatusServiceUnavailable, "not_applied"},
		{fmt.Errorf("%w: deadline", ErrUnavailable), http.StatusServiceUnavailable, "unknown"},
	} {
		fc := &fakeCluster{
			add:    func(context.Context, NodeSpec) (Node, error) { return Node{}, c.err },
			remove: func(context.Context, uint64) (Nodes, error) { return Nodes{}, c.err },
		}
		for _, r := range []*http.Request{
			mgmtRequest(http.MethodPost, "/mgmt/nodes", `{"id":4,"peer_url":"http://h:1"}`),
			mgmtRequest(http.MethodDelete, "/mgmt/nodes/2", ""),
		} {
			rec := serve(t, nil, fc, r)
			var body struct{ Error, Outcome string }
			decodeBody(t, rec, &body)
			if rec.Code != c.status || body.Outcome != c.outcome {
				t.Errorf("%s %s with %v: %d outcome %q, want %d %q", r.Method, r.URL, c.err, rec.Code, body.Outcome, c.status, c.outcome)
			}
		}
	}
	fc := &fakeCluster{transfer: func(context.Context, uint64) (Nodes, error) {
		return Nodes{}, fmt.Errorf("%w: node 1 still leads", ErrGatewayTimeout)
	}}
	if rec := serve(t, nil, fc, mgmtRequest(http.MethodPost, "/mgmt/leader", `{"id":2}`)); rec.Code != http.StatusGatewayTimeout {
		t.Errorf("transfer timeout: %d", rec.Code)
	}
}

// A promotion asked of a follower is answered by the leader, once.
func TestPromoteForwardsToLeader(t *testing.T) {
	var calls int
	leader := &fakeCluster{promote: func(_ context.Context, id uint64) (Node, error) {
		calls++
		return Node{ID: id, Learner: false}, nil
	}}
	ls := httptest.NewServer(NewRouter(nil, leader, nopLogger(), Options{}))
	defer ls.Close()
	follower := &fakeCluster{promote: func(context.Context, uint64) (Node, error) {
		return Node{}, &LeaderElsewhereError{URL: ls.URL}
	}}
	rec := serve(t, nil, follower, mgmtRequest(http.MethodPost, "/mgmt/nodes/4/promote", ""))
	if rec.Code != http.StatusOK || calls != 1 || !strings.Contains(rec.Body.String(), `"id":4`) {
		t.Fatalf("forwarded promote: %d %s (leader called %d times)", rec.Code, rec.Body, calls)
	}
	// A leader that also points elsewhere does not forward again.
	loop := httptest.NewServer(NewRouter(nil, follower, nopLogger(), Options{}))
	defer loop.Close()
	follower.promote = func(context.Context, uint64) (Node, error) { return Node{}, &LeaderElsewhereError{URL: loop.URL} }
	rec = serve(t, nil, follower, mgmtRequest(http.MethodPost, "/mgmt/nodes/4/promote", ""))
	if rec.Code < 500 {
		t.Fatalf("a forwarding loop must end in an error, got %d %s", rec.Code, rec.Body)
	}
}

func nopLogger() *zap.Logger { return zap.NewNop() }

func decodeBody(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("status %d: body %q is not JSON: %v", rec.Code, rec.Body, err)
	}
}
