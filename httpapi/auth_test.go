package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
)

type fakeAuth map[string][]Role

func (f fakeAuth) Authorize(token string, role Role) error {
	roles, ok := f[token]
	if !ok {
		return fmt.Errorf("%w: no", ErrUnauthorized)
	}
	for _, r := range roles {
		if r == role {
			return nil
		}
	}
	if role == RoleAny {
		return nil
	}
	return fmt.Errorf("%w: no %s", ErrForbidden, role)
}

// Routes ask the Authorizer for their role with the request's bearer
// token: 401 (with WWW-Authenticate) or 403 reach no handler; unrouted
// requests keep their 404 and 405.
func TestAuthorizeMiddleware(t *testing.T) {
	q, takes := countingQueue(func() bool { return false })
	h := NewRouter(q, nil, zap.NewNop(), Options{Auth: fakeAuth{"p": {RoleProducer}, "c": {RoleConsumer}}})
	call := func(method, path, auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, c := range []struct {
		method, path, auth string
		status             int
	}{
		{"GET", "/queues/q", "", 401},
		{"GET", "/queues/q", "Bearer x", 401},
		{"GET", "/queues/q", "Basic Yzo=", 401},
		{"GET", "/queues/q", "Bearer p", 403},
		{"GET", "/queues/q", "bearer c", 204},
		{"GET", "/nope", "", 404},
		{"PATCH", "/queues/q", "", 405},
	} {
		rec := call(c.method, c.path, c.auth)
		if rec.Code != c.status {
			t.Errorf("%s %s %q: %d, want %d", c.method, c.path, c.auth, rec.Code, c.status)
		}
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s %q: 401 without WWW-Authenticate", c.method, c.path, c.auth)
		}
	}
	if takes.Load() != 1 {
		t.Fatalf("%d takes: refused requests reached the handler", takes.Load())
	}
}

// The role each route needs (a route missing from routeRole's cases
// needs admin).
func TestEveryRouteHasARole(t *testing.T) {
	want := map[string]Role{
		"GET /queues": RoleAny, "PUT /queues/{queue}": RoleProducer, "POST /queues/{queue}": RoleProducer,
		"GET /queues/{queue}": RoleConsumer, "POST /queues/{queue}/leases": RoleConsumer, "POST /queues/{queue}/batch": RoleProducer,
		"DELETE /queues/{queue}/messages/{id}": RoleConsumer, "POST /queues/{queue}/messages/{id}/release": RoleConsumer,
		"POST /queues/{queue}/messages/{id}/extend": RoleConsumer, "POST /queues/{queue}/acks": RoleConsumer,
		"POST /queues/{queue}/releases": RoleConsumer, "DELETE /queues/{queue}": RoleAdmin, "PUT /queues/{queue}/config": RoleAdmin,
		"POST /queues/{queue}/purge": RoleAdmin, "GET /queues/{queue}/messages": RoleConsumer, "GET /queues/{queue}/stats": RoleAny,
		"GET /mgmt/nodes": RoleAny, "POST /mgmt/nodes": RoleAdmin, "DELETE /mgmt/nodes/{id}": RoleAdmin,
		"POST /mgmt/nodes/{id}/promote": RoleAdmin, "POST /mgmt/leader": RoleAdmin, "DELETE /mgmt/alarms/{id}": RoleAdmin,
		"GET /mgmt/limits": RoleAny, "PUT /mgmt/limits": RoleAdmin, "GET /debug/state": RoleAdmin, "GET /debug/counters": RoleAdmin,
		"GET /mgmt/status": RoleAny,
	}
	for route, role := range want {
		var method, path string
		fmt.Sscan(route, &method, &path)
		if got, open := routeRole(path, method, false); open || got != role {
			t.Errorf("%s: role %q open %v, want %q", route, got, open, role)
		}
	}
	for _, open := range []string{"/healthz", "/readyz", "/metrics"} {
		if _, ok := routeRole(open, "GET", false); !ok {
			t.Errorf("%s is not open", open)
		}
	}
	if role, open := routeRole("/metrics", "GET", true); open || role != RoleAny {
		t.Error("--metrics-auth leaves /metrics open")
	}
}
