package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"github.com/raftq/raftq/internal/failpoint"
)

// Limits and defaults of the API (documented in the README).
const (
	DefaultMaxMessageBytes = 1 << 20
	DefaultRequestTimeout  = 5 * time.Second
	MaxContentTypeLen      = 256
	// DefaultMaxWaiters bounds the long polls waiting at once on one node
	// (each holds a connection and a goroutine); past it a poll answers
	// 429 at once.
	DefaultMaxWaiters  = 10000
	defaultContentType = "application/octet-stream"
)

// Options tune the router; zero fields take the defaults.
type Options struct {
	MaxMessageBytes int64         // largest message body accepted
	RequestTimeout  time.Duration // deadline for each replicated operation
	MaxWaiters      int           // long polls waiting at once
	// Ops serves /healthz, /readyz, /mgmt/status and /metrics (nil: those
	// routes answer 404); Metrics observes requests and refusals.
	Ops     Operations
	Metrics Metrics
	// Auth checks bearer tokens (nil: no tokens, all allowed);
	// MetricsAuth makes /metrics need a valid token too.
	Auth        Authorizer
	MetricsAuth bool
	// Forward carries requests forwarded to the leader's API and the
	// console's questions to each member (nil: the default transport;
	// with TLS, one trusting the API's CA).
	Forward http.RoundTripper
	// UI, if set, serves the web console at /ui/ (its assets are open;
	// what it shows comes from the API, with the token it is given).
	UI http.Handler
}

func (o Options) withDefaults() Options {
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxWaiters <= 0 {
		o.MaxWaiters = DefaultMaxWaiters
	}
	return o
}

type api struct {
	q       Queue
	c       Cluster
	lg      *zap.Logger
	opts    Options
	waiters WaiterCap // long polls waiting now
	ops     Operations
	// clusterView caches GET /mgmt/cluster for a second.
	clusterView clusterCache
}

// NewRouter returns the client API handler.
func NewRouter(q Queue, c Cluster, lg *zap.Logger, opts Options) http.Handler {
	a := &api{q: q, c: c, lg: lg, opts: opts.withDefaults(), ops: opts.Ops}
	a.waiters.Max = a.opts.MaxWaiters
	// No path cleaning: the router would answer /queues/. and /queues/..
	// with a redirect elsewhere instead of letting the name be refused.
	r := mux.NewRouter().SkipClean(true)
	r.HandleFunc("/queues", a.listQueues).Methods(http.MethodGet)
	r.HandleFunc("/queues/{queue}", a.enqueue).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/queues/{queue}", a.dequeue).Methods(http.MethodGet)
	r.HandleFunc("/queues/{queue}/leases", a.lease).Methods(http.MethodPost)
	r.HandleFunc("/queues/{queue}/batch", a.enqueueBatch).Methods(http.MethodPost)
	r.HandleFunc("/queues/{queue}/messages/{id}", a.ack).Methods(http.MethodDelete)
	r.HandleFunc("/queues/{queue}/messages/{id}/release", a.release).Methods(http.MethodPost)
	r.HandleFunc("/queues/{queue}/messages/{id}/extend", a.extend).Methods(http.MethodPost)
	r.HandleFunc("/queues/{queue}/acks", a.acks).Methods(http.MethodPost)
	r.HandleFunc("/queues/{queue}/releases", a.releases).Methods(http.MethodPost)
	r.HandleFunc("/queues/{queue}", a.deleteQueue).Methods(http.MethodDelete)
	r.HandleFunc("/queues/{queue}/config", a.configure).Methods(http.MethodPut)
	r.HandleFunc("/queues/{queue}/purge", a.purge).Methods(http.MethodPost)
	r.HandleFunc("/queues/{queue}/messages", a.peek).Methods(http.MethodGet)
	r.HandleFunc("/queues/{queue}/stats", a.stats).Methods(http.MethodGet)
	// The /mgmt routes are on r itself: in a gorilla/mux subrouter a wrong
	// method is answered 404, not 405, unless the route is the last one.
	r.HandleFunc("/mgmt/nodes", a.nodes).Methods(http.MethodGet)
	r.HandleFunc("/mgmt/nodes", a.addNode).Methods(http.MethodPost)
	r.HandleFunc("/mgmt/nodes/{id}", a.removeNode).Methods(http.MethodDelete)
	r.HandleFunc("/mgmt/nodes/{id}/promote", a.promoteNode).Methods(http.MethodPost)
	r.HandleFunc("/mgmt/leader", a.transferLeader).Methods(http.MethodPost)
	r.HandleFunc("/mgmt/alarms/{id}", a.clearAlarm).Methods(http.MethodDelete)
	r.HandleFunc("/mgmt/limits", a.limits).Methods(http.MethodGet)
	r.HandleFunc("/mgmt/limits", a.setLimits).Methods(http.MethodPut)
	r.HandleFunc("/mgmt/cluster", a.cluster).Methods(http.MethodGet)
	r.HandleFunc("/mgmt/whoami", a.whoami).Methods(http.MethodGet)
	if a.opts.UI != nil {
		r.PathPrefix("/ui/").Handler(http.StripPrefix("/ui", a.opts.UI)).Methods(http.MethodGet, http.MethodHead)
		r.Handle("/ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently)).Methods(http.MethodGet)
	}
	r.HandleFunc("/debug/state", a.localState).Methods(http.MethodGet)
	r.HandleFunc("/debug/counters", a.counters).Methods(http.MethodGet)
	if a.ops != nil {
		r.HandleFunc("/healthz", a.healthz).Methods(http.MethodGet)
		r.HandleFunc("/readyz", a.readyz).Methods(http.MethodGet)
		r.HandleFunc("/mgmt/status", a.status).Methods(http.MethodGet)
		r.HandleFunc("/metrics", a.metricsRoute).Methods(http.MethodGet)
	}
	r.Use(observeRoute)
	if a.opts.Auth != nil {
		r.Use(a.authorize)
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s", r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path))
	})
	return a.logRequests(r)
}

func (a *api) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), a.opts.RequestTimeout)
}

func (a *api) enqueue(w http.ResponseWriter, r *http.Request) {
	queue := mux.Vars(r)["queue"]
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = defaultContentType
	}
	if err := checkContentType(ct); err != nil {
		a.fail(w, fmt.Errorf("Content-Type: %w", err))
		return
	}
	opts, err := messageOptions(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	opts = withDefaults(a.q.Defaults(queue), opts)
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	res, pos, err := a.q.Enqueue(ctx, queue, ct, body, opts)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	failpoint.Inject(failpoint.APIBeforeRespond)
	setPosition(w, pos)
	w.Header().Set("Location", fmt.Sprintf("/queues/%s/messages/%d", queue, res.ID))
	status := http.StatusCreated
	if res.Replay {
		status = http.StatusOK
		w.Header().Set("Idempotent-Replay", "true")
	}
	writeJSON(w, status, struct {
		Queue string `json:"queue"`
		ID    uint64 `json:"id"`
	}{queue, res.ID})
}

// checkContentType refuses a content type that could not be sent back in a
// response header as it was stored: over MaxContentTypeLen bytes, or with
// a byte outside printable ASCII (tab allowed). Every path that stores
// one checks it.
func checkContentType(ct string) error {
	if len(ct) > MaxContentTypeLen {
		return fmt.Errorf("%w: content type is longer than %d bytes", ErrInvalid, MaxContentTypeLen)
	}
	for i := 0; i < len(ct); i++ {
		if c := ct[i]; (c < 0x20 || c > 0x7e) && c != '\t' {
			return fmt.Errorf("%w: content type has byte %#x at %d; only printable ASCII is allowed", ErrInvalid, c, i)
		}
	}
	return nil
}

// readBody reads at most MaxMessageBytes, answering 413 past that whether
// or not the client sent Content-Length.
func (a *api) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	max := a.opts.MaxMessageBytes
	if r.ContentLength > max {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("message of %d bytes is over the %d-byte limit", r.ContentLength, max))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("message is over the %d-byte limit", max))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading body: %v", err))
		return nil, false
	}
	return body, true
}

func (a *api) dequeue(w http.ResponseWriter, r *http.Request) {
	queue := mux.Vars(r)["queue"]
	if max := r.URL.Query().Get("max"); max != "" {
		a.popMany(w, r, queue, max)
		return
	}
	var m Message
	if a.takeWithWait(w, r, queue, 1, func(ctx context.Context) (found bool, pos LogPosition, err error) {
		m, found, pos, err = a.q.Dequeue(ctx, queue)
		return found, pos, err
	}) {
		writeMessage(w, m) // the message is already removed: at-most-once pop
	}
}

func (a *api) listQueues(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("stats") == "true" {
		a.queueStats(w, r)
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	qs, err := a.q.Queues(ctx)
	if err != nil {
		a.fail(w, err)
		return
	}
	if qs == nil {
		qs = []QueueInfo{}
	}
	writeJSON(w, http.StatusOK, struct {
		Queues []QueueInfo `json:"queues"`
	}{qs})
}

func (a *api) nodes(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.ctx(r)
	defer cancel()
	ns, err := a.c.Nodes(ctx)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ns)
}

func (a *api) localState(w http.ResponseWriter, r *http.Request) {
	st, err := a.c.LocalState()
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *api) counters(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.c.Counters())
}

func setPosition(w http.ResponseWriter, pos LogPosition) {
	w.Header().Set("Raft-Index", strconv.FormatUint(pos.Index, 10))
	w.Header().Set("Raft-Term", strconv.FormatUint(pos.Term, 10))
}

// statusFor maps an error from Queue or Cluster to an HTTP status.
func statusFor(err error) int {
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrUnprocessable):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrGatewayTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrTooManyWaiters), errors.Is(err, ErrQueueFull), errors.Is(err, ErrOverloaded):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrStorageFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusInternalServerError
	}
}

func (a *api) fail(w http.ResponseWriter, err error) {
	a.failOutcome(w, err, "")
}

// failWrite answers a failed write. A 503 says in "outcome" whether the
// write was "not_applied" (safe to retry) or is "unknown" (it may still
// commit; a retry can duplicate it); a 429 of backpressure says
// "not_applied".
func (a *api) failWrite(w http.ResponseWriter, err error) {
	outcome := ""
	switch {
	case errors.Is(err, ErrNotApplied):
		outcome = "not_applied"
	case statusFor(err) == http.StatusServiceUnavailable:
		outcome = "unknown"
	}
	a.failOutcome(w, err, outcome)
}

func (a *api) failOutcome(w http.ResponseWriter, err error, outcome string) {
	status := statusFor(err)
	if limit, scope, ok := refusalOf(err); ok && a.opts.Metrics != nil {
		a.opts.Metrics.Refused(limit, scope)
	}
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	if status >= 500 && status != http.StatusInsufficientStorage { // a full cluster refuses by design, often
		a.lg.Warn("request failed", zap.Int("status", status), zap.Error(err))
	}
	writeJSON(w, status, errorBodyOf(err, outcome))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // read by people with curl: "<token>", not "\u003ctoken\u003e"
	enc.Encode(v)
}

// logRequests logs each request at debug level with its status.
func (a *api) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK, route: "unmatched"}
		next.ServeHTTP(rec, r)
		if a.opts.Metrics != nil {
			a.opts.Metrics.Request(rec.route, metricMethod(r.Method), rec.status, time.Since(start))
		}
		if ce := a.lg.Check(zap.DebugLevel, "request"); ce != nil { // no fields built unless logged
			ce.Write(zap.String("method", r.Method), zap.String("path", r.URL.Path),
				zap.Int("status", rec.status), zap.Duration("took", time.Since(start)))
		}
	})
}

// metricMethod bounds the method label: any other method a client sends
// counts as "other".
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodHead, http.MethodPatch, http.MethodOptions:
		return m
	}
	return "other"
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	route  string // the matched route's template (observeRoute)
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
