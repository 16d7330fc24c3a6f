package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/mux"
)

// Metrics receives what the API observes, for Prometheus; nil observes
// nothing.
type Metrics interface {
	// Request is one answered request: its route (the path template,
	// "unmatched" for no route), method, status and how long it took.
	Request(route, method string, status int, took time.Duration)
	// Refused is a write refused by a limit: max_messages, max_bytes or
	// max_queues in scope "queue" or "cluster", disk_alarm, backpressure
	// or max_waiters in scope "node".
	Refused(limit, scope string)
}

// NodeStatus is GET /mgmt/status: this node as it sees itself, read
// locally.
type NodeStatus struct {
	ID            uint64  `json:"id"`
	Term          uint64  `json:"term"`
	Leader        uint64  `json:"leader"`
	Commit        uint64  `json:"commit"`
	Applied       uint64  `json:"applied"`
	SnapshotIndex uint64  `json:"snapshot_index"`
	WALBytes      int64   `json:"wal_bytes"`
	SnapshotBytes int64   `json:"snapshot_bytes"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Version       string  `json:"version"`
}

// Operations is what the health, status and metrics routes read.
type Operations interface {
	// Ready is nil when this node can serve: it knows a leader and has
	// applied up to the commit index it last heard; else why not.
	Ready() error
	Status() (NodeStatus, error)
	// Metrics serves GET /metrics.
	Metrics() http.Handler
}

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	if err := a.ops.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.ops.Status()
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *api) metricsRoute(w http.ResponseWriter, r *http.Request) {
	a.ops.Metrics().ServeHTTP(w, r)
}

// observeRoute is mux middleware: it notes the matched route's template
// on the request's recorder, for Metrics.
func observeRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*statusRecorder); ok {
			if tpl, err := mux.CurrentRoute(r).GetPathTemplate(); err == nil {
				rec.route = tpl
			}
		}
		next.ServeHTTP(w, r)
	})
}

// refusalOf names the limit that refused err, if one did.
func refusalOf(err error) (limit, scope string, ok bool) {
	var le *LimitError
	var ae *AlarmError
	switch {
	case errors.As(err, &le):
		if le.Queue != "" {
			return le.Limit, "queue", true
		}
		return le.Limit, "cluster", true
	case errors.As(err, &ae):
		return "disk_alarm", "cluster", true
	case errors.Is(err, ErrOverloaded):
		return "backpressure", "node", true
	case errors.Is(err, ErrTooManyWaiters):
		return "max_waiters", "node", true
	}
	return "", "", false
}
