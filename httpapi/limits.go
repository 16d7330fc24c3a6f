package httpapi

import (
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/gorilla/mux"
)

// LimitError says which limit refused a write: its name (max_messages,
// max_bytes, max_queues), the queue it belongs to ("" for the cluster's),
// its value, the usage before the write and what the write asked for (in
// messages, bytes or queues, as the limit counts). Err is ErrQueueFull
// for a queue's limit, ErrStorageFull for the cluster's.
type LimitError struct {
	Err     error
	Limit   string
	Queue   string
	Value   int64
	Usage   int64
	Request int64
}

func (e *LimitError) Error() string {
	scope := "cluster"
	if e.Queue != "" {
		scope = "queue " + e.Queue
	}
	return fmt.Sprintf("%v: %s %s is %d, %d in use, %d more asked", e.Err, scope, e.Limit, e.Value, e.Usage, e.Request)
}

func (e *LimitError) Unwrap() error { return e.Err }

// AlarmError: a disk space alarm raised by Nodes refused the write; it
// wraps ErrStorageFull.
type AlarmError struct {
	Nodes []uint64
}

func (e *AlarmError) Error() string {
	return fmt.Sprintf("%v: disk space alarm raised by nodes %v; only what frees space is accepted", ErrStorageFull, e.Nodes)
}

func (e *AlarmError) Unwrap() error { return ErrStorageFull }

// errorBody is every error answer's JSON; a refusal by a limit names it,
// one by a disk alarm lists the nodes that raised it.
type errorBody struct {
	Error   string   `json:"error"`
	Outcome string   `json:"outcome,omitempty"`
	Limit   string   `json:"limit,omitempty"`
	Queue   string   `json:"queue,omitempty"`
	Value   *int64   `json:"value,omitempty"`
	Usage   *int64   `json:"usage,omitempty"`
	Request *int64   `json:"request,omitempty"`
	Alarms  []uint64 `json:"alarms,omitempty"`
}

// errorBodyOf is the JSON answer for err.
func errorBodyOf(err error, outcome string) errorBody {
	b := errorBody{Error: err.Error(), Outcome: outcome}
	var le *LimitError
	var ae *AlarmError
	switch {
	case errors.As(err, &le):
		b.Limit, b.Queue, b.Value, b.Usage, b.Request = le.Limit, le.Queue, &le.Value, &le.Usage, &le.Request
	case errors.As(err, &ae):
		b.Alarms = ae.Nodes
	}
	return b
}

// configure answers PUT /queues/{q}/config: only the keys present are set.
func (a *api) configure(w http.ResponseWriter, r *http.Request) {
	var ch ConfigChange
	if err := decodeJSON(w, r, &ch); err != nil {
		a.fail(w, err)
		return
	}
	if err := checkConfig(ch); err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	cfg, pos, err := a.q.Configure(ctx, mux.Vars(r)["queue"], ch)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	setPosition(w, pos)
	writeJSON(w, http.StatusOK, cfg)
}

func checkConfig(ch ConfigChange) error {
	if ch == (ConfigChange{}) {
		return fmt.Errorf("%w: set at least one of max_deliveries, dead_letter_queue, max_messages, max_bytes, "+
			"visibility_timeout_ms, delay_ms, receive_wait_ms, max_message_size, retention_ms, content_dedup", ErrInvalid)
	}
	for _, f := range []struct {
		name string
		v    *int64
		max  int64
	}{
		{"max_messages", ch.MaxMessages, math.MaxInt64}, {"max_bytes", ch.MaxBytes, math.MaxInt64},
		{"visibility_timeout_ms", ch.VisibilityTimeoutMS, MaxLeaseTTL.Milliseconds()}, {"delay_ms", ch.DelayMS, MaxDelay.Milliseconds()},
		{"receive_wait_ms", ch.ReceiveWaitMS, MaxWait.Milliseconds()}, {"max_message_size", ch.MaxMessageSize, math.MaxInt64},
		{"retention_ms", ch.RetentionMS, math.MaxInt64},
	} {
		if f.v != nil && (*f.v < 0 || *f.v > f.max) {
			return fmt.Errorf("%w: %s must be 0 (none) to %d", ErrInvalid, f.name, f.max)
		}
	}
	return nil
}

// limits answers GET /mgmt/limits.
func (a *api) limits(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.ctx(r)
	defer cancel()
	l, err := a.q.Limits(ctx)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, withAlarms(l))
}

// setLimits answers PUT /mgmt/limits: only the keys present are set.
func (a *api) setLimits(w http.ResponseWriter, r *http.Request) {
	var ch LimitsChange
	if err := decodeJSON(w, r, &ch); err != nil {
		a.fail(w, err)
		return
	}
	switch {
	case ch.MaxQueues == nil && ch.MaxBytes == nil:
		a.fail(w, fmt.Errorf("%w: set at least one of max_queues, max_bytes", ErrInvalid))
		return
	case ch.MaxQueues != nil && *ch.MaxQueues < 0 || ch.MaxBytes != nil && *ch.MaxBytes < 0:
		a.fail(w, fmt.Errorf("%w: max_queues and max_bytes must be 0 (no limit) or more", ErrInvalid))
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	l, pos, err := a.q.SetLimits(ctx, ch)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	setPosition(w, pos)
	writeJSON(w, http.StatusOK, withAlarms(l))
}

// clearAlarm answers DELETE /mgmt/alarms/{id}: the node's disk alarm is
// cleared (the node raises it again at its next check if its disk is
// still short), and the limits after are answered. Clearing an alarm not
// raised changes nothing and answers the same: a retry is safe.
func (a *api) clearAlarm(w http.ResponseWriter, r *http.Request) {
	id, err := nodeID(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	l, pos, err := a.q.ClearAlarm(ctx, id)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	setPosition(w, pos)
	writeJSON(w, http.StatusOK, withAlarms(l))
}

// withAlarms shows no alarm as [], not null.
func withAlarms(l ClusterLimits) ClusterLimits {
	if l.Alarms == nil {
		l.Alarms = []uint64{}
	}
	return l
}
