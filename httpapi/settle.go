package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
)

// MaxSettleBatch is how many leases one POST /queues/{q}/acks or
// /releases settles at most; maxSettleBody bounds its JSON body.
const (
	MaxSettleBatch = 1000
	maxSettleBody  = 1 << 20
)

// settleItem is one lease to ack or release: the message id and its lease
// token; a release may give a delay ("5s") before the message is ready.
type settleItem struct {
	ID    uint64 `json:"id"`
	Lease string `json:"lease"`
	Delay string `json:"delay,omitempty"`
}

// settleResult is one item's outcome: the status its own request would
// have had (204, or the error's), with the error's message and, for a
// 503, whether it was applied.
type settleResult struct {
	ID      uint64 `json:"id"`
	Status  int    `json:"status"`
	Error   string `json:"error,omitempty"`
	Outcome string `json:"outcome,omitempty"`
}

// acks answers POST /queues/{q}/acks {"acks":[{"id":1,"lease":"…"},…]}.
func (a *api) acks(w http.ResponseWriter, r *http.Request) {
	a.settle(w, r, "acks", false, func(ctx context.Context, queue string, it settleItem, _ time.Duration) (LogPosition, error) {
		return a.q.Ack(ctx, queue, it.ID, it.Lease)
	})
}

// releases answers POST /queues/{q}/releases
// {"releases":[{"id":1,"lease":"…","delay":"5s"},…]}.
func (a *api) releases(w http.ResponseWriter, r *http.Request) {
	a.settle(w, r, "releases", true, func(ctx context.Context, queue string, it settleItem, delay time.Duration) (LogPosition, error) {
		return a.q.Release(ctx, queue, it.ID, it.Lease, delay)
	})
}

// settle checks every item first (one bad item refuses the request, and
// nothing is done), then settles them all at once: the node gathers them
// into groups of its proposals, so a request of many costs a few raft
// entries. It answers 200 with each item's result, in the request's order.
func (a *api) settle(w http.ResponseWriter, r *http.Request, key string, delays bool,
	one func(context.Context, string, settleItem, time.Duration) (LogPosition, error)) {
	items, ds, err := decodeSettle(w, r, key, delays)
	if err != nil {
		a.fail(w, err)
		return
	}
	queue := mux.Vars(r)["queue"]
	ctx, cancel := a.ctx(r)
	defer cancel()
	results := make([]settleResult, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = settleResultOf(it.ID, func() error { _, err := one(ctx, queue, it, ds[i]); return err }())
		}()
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, struct {
		Results []settleResult `json:"results"`
	}{results})
}

func settleResultOf(id uint64, err error) settleResult {
	if err == nil {
		return settleResult{ID: id, Status: http.StatusNoContent}
	}
	res := settleResult{ID: id, Status: statusFor(err), Error: err.Error()}
	switch {
	case errors.Is(err, ErrNotApplied):
		res.Outcome = "not_applied"
	case res.Status == http.StatusServiceUnavailable:
		res.Outcome = "unknown"
	}
	return res
}

// decodeSettle reads and checks a settle request's items and delays.
func decodeSettle(w http.ResponseWriter, r *http.Request, key string, delays bool) ([]settleItem, []time.Duration, error) {
	var in map[string][]settleItem
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSettleBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || dec.More() {
		return nil, nil, fmt.Errorf("%w: malformed JSON body: want {%q:[{\"id\":…,\"lease\":\"…\"},…]} (at most %d bytes): %v", ErrInvalid, key, maxSettleBody, err)
	}
	items, ok := in[key]
	if !ok || len(in) != 1 {
		return nil, nil, fmt.Errorf("%w: the body is {%q:[…]} and nothing else", ErrInvalid, key)
	}
	if len(items) == 0 || len(items) > MaxSettleBatch {
		return nil, nil, fmt.Errorf("%w: %s holds 1 to %d items, got %d", ErrInvalid, key, MaxSettleBatch, len(items))
	}
	ds := make([]time.Duration, len(items))
	for i, it := range items {
		if it.ID == 0 || it.Lease == "" {
			return nil, nil, fmt.Errorf("%w: item %d: a positive id and a lease token are required", ErrInvalid, i)
		}
		if it.Delay != "" && !delays {
			return nil, nil, fmt.Errorf("%w: item %d: an ack takes no delay", ErrInvalid, i)
		}
		d, err := duration(it.Delay, "delay", 0, 0, MaxDelay)
		if err != nil {
			return nil, nil, fmt.Errorf("item %d: %w", i, err)
		}
		ds[i] = d
	}
	return items, ds, nil
}
