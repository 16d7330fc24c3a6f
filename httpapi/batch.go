package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"
)

// Batch limits (documented in the README).
const (
	MaxBatchMessages = 1000
	MaxBatchBytes    = 8 << 20 // a batch request's whole JSON body
)

// BatchMessage is one message of a batch, in and out: the body as text
// when it is valid UTF-8, else base64. The key and delay are read only.
type BatchMessage struct {
	ID             uint64          `json:"id,omitempty"`
	Body           *string         `json:"body,omitempty"`
	BodyB64        *string         `json:"body_b64,omitempty"`
	ContentType    string          `json:"content_type,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	DelayMS        *int64          `json:"delay_ms,omitempty"`
	Group          string          `json:"group,omitempty"`
	Attributes     json.RawMessage `json:"attributes,omitempty"`
}

func (a *api) enqueueBatch(w http.ResponseWriter, r *http.Request) {
	queue := mux.Vars(r)["queue"]
	var in struct {
		Messages []BatchMessage `json:"messages"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBatchBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("batch body is over the %d-byte limit", MaxBatchBytes))
			return
		}
		a.fail(w, fmt.Errorf("%w: malformed JSON body: %v", ErrInvalid, err))
		return
	}
	if len(in.Messages) == 0 || len(in.Messages) > MaxBatchMessages {
		a.fail(w, fmt.Errorf("%w: a batch holds 1 to %d messages, got %d", ErrInvalid, MaxBatchMessages, len(in.Messages)))
		return
	}
	items := make([]NewMessage, len(in.Messages))
	cfg := a.q.Defaults(queue) // read once for the whole batch
	for i, m := range in.Messages {
		var body string
		switch {
		case m.Body != nil && m.BodyB64 == nil:
			body = *m.Body
		case m.BodyB64 != nil && m.Body == nil:
			b, err := base64.StdEncoding.DecodeString(*m.BodyB64)
			if err != nil {
				a.fail(w, fmt.Errorf("%w: message %d: body_b64 is not base64: %v", ErrInvalid, i, err))
				return
			}
			body = string(b)
		default:
			a.fail(w, fmt.Errorf("%w: message %d needs exactly one of body and body_b64", ErrInvalid, i))
			return
		}
		if int64(len(body)) > a.opts.MaxMessageBytes {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("message %d is over the %d-byte limit", i, a.opts.MaxMessageBytes))
			return
		}
		ct := m.ContentType
		if ct == "" {
			ct = defaultContentType
		}
		if err := checkContentType(ct); err != nil {
			a.fail(w, fmt.Errorf("message %d: content_type: %w", i, err))
			return
		}
		opts, err := batchOptions(cfg, m)
		if err != nil {
			a.fail(w, fmt.Errorf("message %d: %w", i, err))
			return
		}
		items[i] = NewMessage{ContentType: ct, Body: body, Options: opts}
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	res, pos, err := a.q.EnqueueBatch(ctx, queue, items)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	setPosition(w, pos)
	out := struct {
		Queue   string   `json:"queue"`
		IDs     []uint64 `json:"ids"`
		Replays []int    `json:"replays,omitempty"` // indexes of the messages whose key was seen
	}{Queue: queue, IDs: make([]uint64, len(res))}
	for i, e := range res {
		out.IDs[i] = e.ID
		if e.Replay {
			out.Replays = append(out.Replays, i)
		}
	}
	writeJSON(w, http.StatusCreated, out)
}

// batchOptions reads a batch message's key, delay (the queue's delay_ms
// when absent), group and attributes.
func batchOptions(cfg QueueConfig, m BatchMessage) (EnqueueOptions, error) {
	opts := EnqueueOptions{IdempotencyKey: m.IdempotencyKey, Group: m.Group}
	if m.DelayMS != nil {
		if *m.DelayMS < 0 || *m.DelayMS > MaxDelay.Milliseconds() {
			return opts, fmt.Errorf("%w: delay_ms must be 0 to %d", ErrInvalid, MaxDelay.Milliseconds())
		}
		opts.Delay, opts.DelaySet = time.Duration(*m.DelayMS)*time.Millisecond, true
	}
	if m.Group != "" {
		if err := ValidateGroup(m.Group); err != nil {
			return opts, err
		}
	}
	if len(m.Attributes) > 0 {
		var err error
		if opts.Attributes, err = decodeAttributes(m.Attributes); err != nil {
			return opts, err
		}
	}
	return withDefaults(cfg, opts), nil
}

// popMany answers GET /queues/{q}?max=N.
func (a *api) popMany(w http.ResponseWriter, r *http.Request, queue, maxParam string) {
	n, err := strconv.Atoi(maxParam)
	if err != nil || n < 1 || n > MaxBatchMessages {
		a.fail(w, fmt.Errorf("%w: max=%q must be 1 to %d", ErrInvalid, maxParam, MaxBatchMessages))
		return
	}
	var ms []Message
	if !a.takeWithWait(w, r, queue, n, func(ctx context.Context) (bool, LogPosition, error) {
		var pos LogPosition
		var err error
		ms, pos, err = a.q.PopMany(ctx, queue, n)
		return len(ms) > 0, pos, err
	}) {
		return
	}
	out := make([]BatchMessage, len(ms))
	for i, m := range ms {
		out[i] = batchJSON(m)
	}
	writeJSON(w, http.StatusOK, struct {
		Messages []BatchMessage `json:"messages"`
	}{out})
}

// leaseMany answers POST /queues/{q}/leases?max=N: up to N leases in one
// entry, as JSON, each message with its token and expiry.
func (a *api) leaseMany(w http.ResponseWriter, r *http.Request, queue string, ttl time.Duration, maxParam string) {
	n, err := strconv.Atoi(maxParam)
	if err != nil || n < 1 || n > MaxBatchMessages {
		a.fail(w, fmt.Errorf("%w: max=%q must be 1 to %d", ErrInvalid, maxParam, MaxBatchMessages))
		return
	}
	var ls []Lease
	if !a.takeWithWait(w, r, queue, n, func(ctx context.Context) (bool, LogPosition, error) {
		var pos LogPosition
		var err error
		ls, pos, err = a.q.LeaseMany(ctx, queue, ttl, n)
		return len(ls) > 0, pos, err
	}) {
		return
	}
	type leaseJSON struct {
		BatchMessage
		Token      string    `json:"lease_token"`
		Expires    time.Time `json:"lease_expires"`
		Deliveries uint64    `json:"delivery_count"`
	}
	out := make([]leaseJSON, len(ls))
	for i, l := range ls {
		out[i] = leaseJSON{BatchMessage: batchJSON(l.Message), Token: l.Token, Expires: l.Expires.UTC(), Deliveries: l.Message.Deliveries}
	}
	writeJSON(w, http.StatusOK, struct {
		Leases []leaseJSON `json:"leases"`
	}{out})
}

// batchJSON is a taken message as a batch shows it.
func batchJSON(m Message) BatchMessage {
	out := BatchMessage{ID: m.ID, ContentType: m.ContentType, Group: m.Group}
	out.Body, out.BodyB64 = textOrBase64(m.Body)
	if len(m.Attributes) > 0 {
		out.Attributes = encodeAttributes(m.Attributes)
	}
	return out
}

// textOrBase64 is how a body shows in JSON: as text when it is valid
// UTF-8, else as base64.
func textOrBase64(body string) (text, b64 *string) {
	if utf8.ValidString(body) {
		return &body, nil
	}
	s := base64.StdEncoding.EncodeToString([]byte(body))
	return nil, &s
}
