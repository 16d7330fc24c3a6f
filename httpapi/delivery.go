package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/raftq/raftq/internal/failpoint"
)

// Limits of the delivery API (documented in the README).
const (
	DefaultLeaseTTL = 30 * time.Second
	MinLeaseTTL     = time.Second
	MaxLeaseTTL     = 12 * time.Hour
	MaxDelay        = 12 * time.Hour
	MaxWait         = 60 * time.Second
)

// duration parses an optional duration parameter within [lo, hi].
func duration(s, name string, def, lo, hi time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < lo || d > hi {
		return 0, fmt.Errorf("%w: %s=%q must be a duration from %v to %v (like 30s)", ErrInvalid, name, s, lo, hi)
	}
	return d, nil
}

func messageID(r *http.Request) (uint64, error) {
	s := mux.Vars(r)["id"]
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: message id %q must be a positive integer", ErrInvalid, s)
	}
	return id, nil
}

func leaseToken(r *http.Request) (string, error) {
	t := r.URL.Query().Get("lease")
	if t == "" {
		return "", fmt.Errorf("%w: the lease token is required: ?lease=TOKEN", ErrInvalid)
	}
	return t, nil
}

// longPoll is LongPoll for a request, under its deadline and this API's
// waiter cap.
func (a *api) longPoll(r *http.Request, queue string, wait time.Duration, want int, op func(context.Context) (bool, error)) error {
	return LongPoll(r.Context(), a.q, queue, wait, want, a.opts.RequestTimeout, &a.waiters, op)
}

// leaseTTL is the ttl of a lease or an extend that names none: the
// queue's visibility_timeout_ms, else DefaultLeaseTTL.
func (a *api) leaseTTL(queue string) time.Duration {
	if v := a.q.Defaults(queue).VisibilityTimeoutMS; v > 0 {
		return min(max(time.Duration(v)*time.Millisecond, MinLeaseTTL), MaxLeaseTTL)
	}
	return DefaultLeaseTTL
}

func (a *api) lease(w http.ResponseWriter, r *http.Request) {
	queue := mux.Vars(r)["queue"]
	ttl, err := duration(r.URL.Query().Get("ttl"), "ttl", a.leaseTTL(queue), MinLeaseTTL, MaxLeaseTTL)
	if err != nil {
		a.fail(w, err)
		return
	}
	if max := r.URL.Query().Get("max"); max != "" {
		a.leaseMany(w, r, queue, ttl, max)
		return
	}
	var l Lease
	if a.takeWithWait(w, r, queue, 1, func(ctx context.Context) (found bool, pos LogPosition, err error) {
		l, found, pos, err = a.q.Lease(ctx, queue, ttl)
		return found, pos, err
	}) {
		w.Header().Set("Lease-Token", l.Token)
		w.Header().Set("Lease-Expires", l.Expires.UTC().Format(time.RFC3339Nano))
		writeMessage(w, l.Message)
	}
}

// takeWithWait runs a write that takes messages (a pop or a lease),
// long-polling per ?wait= while nothing is ready. It answers errors and
// 204 itself and sets the log position; true means the caller writes what
// was found.
func (a *api) takeWithWait(w http.ResponseWriter, r *http.Request, queue string, want int, take func(context.Context) (bool, LogPosition, error)) bool {
	wait, err := duration(r.URL.Query().Get("wait"), "wait", min(time.Duration(a.q.Defaults(queue).ReceiveWaitMS)*time.Millisecond, MaxWait), 0, MaxWait)
	if err != nil {
		a.fail(w, err)
		return false
	}
	var found bool
	var pos LogPosition
	err = a.longPoll(r, queue, wait, want, func(ctx context.Context) (bool, error) {
		var err error
		found, pos, err = take(ctx)
		return found, err
	})
	if err != nil {
		a.failWrite(w, err)
		return false
	}
	failpoint.Inject(failpoint.APIBeforeRespond)
	if pos.Index > 0 { // a long poll that ended empty wrote nothing
		setPosition(w, pos)
	}
	if !found {
		w.WriteHeader(http.StatusNoContent)
	}
	return found
}

// writeMessage answers 200 with a message's bytes and headers.
func writeMessage(w http.ResponseWriter, m Message) {
	h := w.Header()
	h.Set("Message-Id", strconv.FormatUint(m.ID, 10))
	h.Set("Content-Type", m.ContentType)
	// A body is the producer's bytes: a browser must not run them as this
	// origin's page, whatever their content type says.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	h.Set("Content-Length", strconv.Itoa(len(m.Body)))
	if m.Deliveries > 0 {
		h.Set("Delivery-Count", strconv.FormatUint(m.Deliveries, 10))
	}
	if o := m.Origin; o != nil {
		h.Set("Dead-Letter-Origin-Queue", o.Queue)
		h.Set("Dead-Letter-Origin-Id", strconv.FormatUint(o.ID, 10))
		h.Set("Dead-Letter-Deliveries", strconv.FormatUint(o.Deliveries, 10))
	}
	if m.Group != "" {
		h.Set("Message-Group", m.Group)
	}
	if len(m.Attributes) > 0 {
		h.Set("Message-Attributes", string(encodeAttributes(m.Attributes)))
	}
	if !m.Enqueued.IsZero() {
		h.Set("Enqueued-At", m.Enqueued.UTC().Format(time.RFC3339))
	}
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, m.Body) // written after the state change; a failed write is the client's loss
}

// leased parses the id and token of a route on a leased message.
func leased(r *http.Request) (queue string, id uint64, token string, err error) {
	if id, err = messageID(r); err != nil {
		return "", 0, "", err
	}
	token, err = leaseToken(r)
	return mux.Vars(r)["queue"], id, token, err
}

func (a *api) ack(w http.ResponseWriter, r *http.Request) {
	queue, id, token, err := leased(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	pos, err := a.q.Ack(ctx, queue, id, token)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	setPosition(w, pos)
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) release(w http.ResponseWriter, r *http.Request) {
	queue, id, token, err := leased(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	delay, err := duration(r.URL.Query().Get("delay"), "delay", 0, 0, MaxDelay)
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	pos, err := a.q.Release(ctx, queue, id, token, delay)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	setPosition(w, pos)
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) extend(w http.ResponseWriter, r *http.Request) {
	queue, id, token, err := leased(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	ttl, err := duration(r.URL.Query().Get("ttl"), "ttl", a.leaseTTL(queue), MinLeaseTTL, MaxLeaseTTL)
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	expires, pos, err := a.q.Extend(ctx, queue, id, token, ttl)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	setPosition(w, pos)
	w.Header().Set("Lease-Expires", expires.UTC().Format(time.RFC3339Nano))
	writeJSON(w, http.StatusOK, struct {
		Expires time.Time `json:"lease_expires"`
	}{expires.UTC()})
}
