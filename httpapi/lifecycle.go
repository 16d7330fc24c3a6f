package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
)

// Peek limits (documented in the README).
const (
	MaxPeek     = 1000
	DefaultPeek = 100
)

// deleteQueue answers DELETE /queues/{q}: 204, or 404 when unknown.
func (a *api) deleteQueue(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.ctx(r)
	defer cancel()
	pos, err := a.q.DeleteQueue(ctx, mux.Vars(r)["queue"])
	if err != nil {
		a.failWrite(w, err)
		return
	}
	setPosition(w, pos)
	w.WriteHeader(http.StatusNoContent)
}

// purge answers POST /queues/{q}/purge with how many messages it dropped.
func (a *api) purge(w http.ResponseWriter, r *http.Request) {
	queue := mux.Vars(r)["queue"]
	ctx, cancel := a.ctx(r)
	defer cancel()
	n, pos, err := a.q.Purge(ctx, queue)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	setPosition(w, pos)
	writeJSON(w, http.StatusOK, struct {
		Queue  string `json:"queue"`
		Purged int    `json:"purged"`
	}{queue, n})
}

// peekedJSON is one message of a peek.
type peekedJSON struct {
	ID          uint64          `json:"id"`
	Body        *string         `json:"body,omitempty"`
	BodyB64     *string         `json:"body_b64,omitempty"`
	ContentType string          `json:"content_type"`
	Deliveries  uint64          `json:"deliveries"`
	EnqueuedAt  time.Time       `json:"enqueued_at"`
	Group       string          `json:"group,omitempty"`
	Attributes  json.RawMessage `json:"attributes,omitempty"`
	Origin      *originJSON     `json:"origin,omitempty"` // a dead letter's
}

type originJSON struct {
	Queue      string `json:"queue"`
	ID         uint64 `json:"id"`
	Deliveries uint64 `json:"deliveries"`
}

// peek answers GET /queues/{q}/messages[?max=N]: ready messages, oldest
// first, none taken.
func (a *api) peek(w http.ResponseWriter, r *http.Request) {
	n := DefaultPeek
	if s := r.URL.Query().Get("max"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > MaxPeek {
			a.fail(w, fmt.Errorf("%w: max=%q must be 1 to %d", ErrInvalid, s, MaxPeek))
			return
		}
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	ms, err := a.q.Peek(ctx, mux.Vars(r)["queue"], n)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]peekedJSON, len(ms))
	for i, m := range ms {
		out[i] = peekedJSON{ID: m.ID, ContentType: m.ContentType, Deliveries: m.Deliveries, EnqueuedAt: m.Enqueued.UTC().Truncate(time.Second), Group: m.Group}
		out[i].Body, out[i].BodyB64 = textOrBase64(m.Body)
		if len(m.Attributes) > 0 {
			out[i].Attributes = encodeAttributes(m.Attributes)
		}
		if o := m.Origin; o != nil {
			out[i].Origin = &originJSON{Queue: o.Queue, ID: o.ID, Deliveries: o.Deliveries}
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Messages []peekedJSON `json:"messages"`
	}{out})
}

// stats answers GET /queues/{q}/stats.
func (a *api) stats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.ctx(r)
	defer cancel()
	st, err := a.q.Stats(ctx, mux.Vars(r)["queue"])
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
