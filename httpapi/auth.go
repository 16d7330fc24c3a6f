package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"
)

// Role is what a token may do.
type Role string

// The roles a token can hold. Any valid token may read the lists and the
// cluster's views; see routeRole for each route.
const (
	RoleProducer Role = "producer" // enqueue, batches
	RoleConsumer Role = "consumer" // dequeue, lease, ack, release, extend, peek
	RoleAdmin    Role = "admin"    // membership, config, limits, delete, purge, alarms, /debug
	// RoleAny is any valid token: the read-only views. Roles are
	// independent: a token lists every role it needs.
	RoleAny Role = ""
)

// Errors of Authorizer.Authorize.
var (
	// ErrUnauthorized: no token, or one not known (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: a valid token without the role the route needs (403).
	ErrForbidden = errors.New("forbidden")
)

// Authorizer checks a request's bearer token for a role; nil in Options
// means no tokens: every request is allowed.
type Authorizer interface {
	// Authorize returns nil when token holds role (any valid token for
	// RoleAny), else an error wrapping ErrUnauthorized (no token, or not
	// a known one) or ErrForbidden (a known one without role).
	Authorize(token string, role Role) error
}

// routeRole is the role a route needs, by its path template and method;
// open is true for the routes anyone may call (health, readiness, and
// metrics unless MetricsAuth).
func routeRole(route, method string, metricsAuth bool) (role Role, open bool) {
	switch route {
	case "/healthz", "/readyz", "/ui", "/ui/":
		return RoleAny, true
	case "/metrics":
		return RoleAny, !metricsAuth
	case "/queues/{queue}":
		switch method {
		case http.MethodPut, http.MethodPost:
			return RoleProducer, false
		case http.MethodGet:
			return RoleConsumer, false
		}
		return RoleAdmin, false // DELETE: the queue
	case "/queues/{queue}/batch":
		return RoleProducer, false
	case "/queues/{queue}/leases", "/queues/{queue}/messages/{id}", "/queues/{queue}/messages/{id}/release",
		"/queues/{queue}/messages/{id}/extend", "/queues/{queue}/acks", "/queues/{queue}/releases", "/queues/{queue}/messages":
		return RoleConsumer, false
	case "/queues", "/queues/{queue}/stats", "/mgmt/nodes", "/mgmt/status", "/mgmt/cluster", "/mgmt/whoami":
		if method == http.MethodGet {
			return RoleAny, false
		}
	case "/mgmt/limits":
		if method == http.MethodGet {
			return RoleAny, false
		}
	}
	return RoleAdmin, false // the other /mgmt writes, config, purge, alarms, /debug
}

// authorize is mux middleware: the route's role, from the request's
// bearer token. It runs after routing (it needs the route); unrouted
// requests get their 404 or 405 whatever the token.
func (a *api) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tpl, _ := mux.CurrentRoute(r).GetPathTemplate()
		role, open := routeRole(tpl, r.Method, a.opts.MetricsAuth)
		if open {
			next.ServeHTTP(w, r)
			return
		}
		if err := a.opts.Auth.Authorize(bearer(r), role); err != nil {
			if errors.Is(err, ErrUnauthorized) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="raftq"`)
			}
			a.fail(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearer is the token of an "Authorization: Bearer <token>" header, "" if
// none.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
