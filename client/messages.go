package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Message is a message as raftq delivers it.
type Message struct {
	ID          uint64
	Body        []byte
	ContentType string
	Group       string               // its message group ("" for none)
	Attributes  map[string]Attribute // nil for none
	Deliveries  uint64               // times leased so far
	Enqueued    time.Time            // when it was stored, to the second (zero if not known)
	Origin      *Origin              // set on dead letters
}

// Attribute is a message attribute: Type is String, Number or Binary,
// with an optional ".label"; Value the value's bytes.
type Attribute struct {
	Type, Value string
}

// Origin says where a dead letter came from.
type Origin struct {
	Queue      string
	ID         uint64
	Deliveries uint64
}

// Lease is a leased message: invisible to other consumers until Expires,
// and settled only with its Token (Ack, Release, Extend).
type Lease struct {
	Message
	Queue   string
	Token   string
	Expires time.Time
}

// SendOption sets an option of an enqueue.
type SendOption func(*sendOptions)

type sendOptions struct {
	key, contentType, group string
	delay                   *time.Duration
	attrs                   map[string]Attribute
}

// WithKey sends with this idempotency key instead of a random one: a send
// with the same key and message within raftq's 10-minute window stores
// nothing and answers the first one's id.
func WithKey(key string) SendOption { return func(o *sendOptions) { o.key = key } }

// WithContentType stores the message with this content type (raftq's
// default is application/octet-stream).
func WithContentType(ct string) SendOption { return func(o *sendOptions) { o.contentType = ct } }

// WithDelay makes the message ready only after d (the queue's delay_ms
// when not given).
func WithDelay(d time.Duration) SendOption { return func(o *sendOptions) { o.delay = &d } }

// WithGroup puts the message in a message group: a group's messages are
// delivered in order, one lease at a time.
func WithGroup(g string) SendOption { return func(o *sendOptions) { o.group = g } }

// WithAttributes stores attributes with the message.
func WithAttributes(a map[string]Attribute) SendOption { return func(o *sendOptions) { o.attrs = a } }

func newKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "c-" + hex.EncodeToString(b[:])
}

// Enqueue stores body in queue and returns its id. Every call carries an
// idempotency key (a random one unless WithKey), so its own retries after
// a lost answer never store the message twice.
func (c *Client) Enqueue(ctx context.Context, queue string, body []byte, opts ...SendOption) (uint64, error) {
	var o sendOptions
	for _, f := range opts {
		f(&o)
	}
	if o.key == "" {
		o.key = newKey()
	}
	h := http.Header{"Idempotency-Key": {o.key}}
	if o.contentType != "" {
		h.Set("Content-Type", o.contentType)
	}
	if o.delay != nil {
		h.Set("Delay", o.delay.String())
	}
	if o.group != "" {
		h.Set("Message-Group", o.group)
	}
	if len(o.attrs) > 0 {
		h.Set("Message-Attributes", string(attributesJSON(o.attrs)))
	}
	var out struct {
		ID uint64 `json:"id"`
	}
	err := c.callJSON(ctx, call{method: http.MethodPost, path: queuePath(queue), body: body, header: h, class: safe, endpoint: -1}, &out)
	return out.ID, err
}

// NewMessage is one message of EnqueueBatch.
type NewMessage struct {
	Body []byte
	Opts []SendOption
}

// EnqueueBatch stores msgs in one log entry, in order, all or none, and
// returns their ids. Each message carries an idempotency key (random
// unless WithKey), so a retried batch stores nothing twice.
func (c *Client) EnqueueBatch(ctx context.Context, queue string, msgs []NewMessage) ([]uint64, error) {
	in := struct {
		Messages []batchMessage `json:"messages"`
	}{Messages: make([]batchMessage, len(msgs))}
	for i, m := range msgs {
		var o sendOptions
		for _, f := range m.Opts {
			f(&o)
		}
		if o.key == "" {
			o.key = newKey()
		}
		it := batchMessage{ContentType: o.contentType, IdempotencyKey: o.key, Group: o.group}
		b64 := base64.StdEncoding.EncodeToString(m.Body)
		it.BodyB64 = &b64
		if o.delay != nil {
			ms := o.delay.Milliseconds()
			it.DelayMS = &ms
		}
		if len(o.attrs) > 0 {
			it.Attributes = attributesJSON(o.attrs)
		}
		in.Messages[i] = it
	}
	b, h := jsonBody(in)
	var out struct {
		IDs []uint64 `json:"ids"`
	}
	err := c.callJSON(ctx, call{method: http.MethodPost, path: queuePath(queue, "/batch"), body: b, header: h, class: safe, endpoint: -1}, &out)
	return out.IDs, err
}

// Dequeue pops the head of queue for good (at most once): nil when none
// is ready within wait. It is not retried once it may have been applied,
// since the message it took would be lost with the answer; use Lease for
// at-least-once delivery.
func (c *Client) Dequeue(ctx context.Context, queue string, wait time.Duration) (*Message, error) {
	resp, err := c.do(ctx, call{method: http.MethodGet, path: queuePath(queue), query: waitQuery(wait), class: notApplied, endpoint: -1})
	if err != nil || resp.status == http.StatusNoContent {
		return nil, err
	}
	return messageOf(resp)
}

// LeaseOptions are a lease's ttl (the queue's visibility timeout, else
// 30 s, when 0) and how long to wait for a message (0: not at all; the
// queue's receive wait applies when it has one).
type LeaseOptions struct {
	TTL, Wait time.Duration
}

func (o LeaseOptions) query() url.Values {
	q := waitQuery(o.Wait)
	if o.TTL > 0 {
		q.Set("ttl", o.TTL.String())
	}
	return q
}

func waitQuery(wait time.Duration) url.Values {
	q := url.Values{}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	return q
}

// Lease leases the oldest ready message of queue: nil when none is ready
// within o.Wait. A lease whose answer was lost is retried: the lost one
// expires and its message comes back.
func (c *Client) Lease(ctx context.Context, queue string, o LeaseOptions) (*Lease, error) {
	resp, err := c.do(ctx, call{method: http.MethodPost, path: queuePath(queue, "/leases"), query: o.query(), class: safe, endpoint: -1})
	if err != nil || resp.status == http.StatusNoContent {
		return nil, err
	}
	m, err := messageOf(resp)
	if err != nil {
		return nil, err
	}
	exp, _ := time.Parse(time.RFC3339Nano, resp.header.Get("Lease-Expires"))
	return &Lease{Message: *m, Queue: queue, Token: resp.header.Get("Lease-Token"), Expires: exp}, nil
}

// LeaseMany leases up to max (1 to 1,000) messages in one log entry; a
// message of a group comes with the next ones of its group. None when
// nothing is ready within o.Wait.
func (c *Client) LeaseMany(ctx context.Context, queue string, max int, o LeaseOptions) ([]Lease, error) {
	q := o.query()
	q.Set("max", strconv.Itoa(max))
	var out struct {
		Leases []struct {
			batchMessage
			Token      string    `json:"lease_token"`
			Expires    time.Time `json:"lease_expires"`
			Deliveries uint64    `json:"delivery_count"`
		} `json:"leases"`
	}
	if err := c.callJSON(ctx, call{method: http.MethodPost, path: queuePath(queue, "/leases"), query: q, class: safe, endpoint: -1}, &out); err != nil {
		return nil, err
	}
	ls := make([]Lease, len(out.Leases))
	for i, l := range out.Leases {
		m, err := l.message()
		if err != nil {
			return nil, err
		}
		m.Deliveries = l.Deliveries
		ls[i] = Lease{Message: m, Queue: queue, Token: l.Token, Expires: l.Expires}
	}
	return ls, nil
}

// Ack removes a leased message for good. ErrLeaseLost when the lease
// expired first (the message will be delivered again). An ack retried
// after a lost answer that finds the message gone has acked it.
func (c *Client) Ack(ctx context.Context, l *Lease) error {
	_, err := c.do(ctx, c.settle(http.MethodDelete, l, "", nil))
	return ackedBefore(err)
}

// ackedBefore turns into success the 404 of a retry after an attempt
// with an unknown outcome: that attempt removed the message.
func ackedBefore(err error) error {
	var e *Error
	if errors.As(err, &e) && e.AfterUnknown && e.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// Release gives a leased message back: ready again at its place in its
// queue after delay.
func (c *Client) Release(ctx context.Context, l *Lease, delay time.Duration) error {
	q := url.Values{}
	if delay > 0 {
		q.Set("delay", delay.String())
	}
	_, err := c.do(ctx, c.settle(http.MethodPost, l, "/release", q))
	var e *Error
	if errors.As(err, &e) && e.AfterUnknown && e.Status == http.StatusConflict {
		return nil // an earlier attempt released it, or its lease ended: it is back either way
	}
	return err
}

// DequeueMany pops up to max (1 to 1,000) messages for good in one log
// entry; none when nothing is ready within wait. Not retried once it may
// have been applied, as Dequeue.
func (c *Client) DequeueMany(ctx context.Context, queue string, max int, wait time.Duration) ([]Message, error) {
	q := waitQuery(wait)
	q.Set("max", strconv.Itoa(max))
	var out struct {
		Messages []batchMessage `json:"messages"`
	}
	if err := c.callJSON(ctx, call{method: http.MethodGet, path: queuePath(queue), query: q, class: notApplied, endpoint: -1}, &out); err != nil {
		return nil, err
	}
	ms := make([]Message, len(out.Messages))
	for i, b := range out.Messages {
		var err error
		if ms[i], err = b.message(); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// Extend moves a lease's expiry to now + ttl and returns it (l.Expires
// is updated too).
func (c *Client) Extend(ctx context.Context, l *Lease, ttl time.Duration) (time.Time, error) {
	var out struct {
		Expires time.Time `json:"lease_expires"`
	}
	if err := c.callJSON(ctx, c.settle(http.MethodPost, l, "/extend", url.Values{"ttl": {ttl.String()}}), &out); err != nil {
		return time.Time{}, err
	}
	l.Expires = out.Expires
	return out.Expires, nil
}

func (c *Client) settle(method string, l *Lease, route string, q url.Values) call {
	if q == nil {
		q = url.Values{}
	}
	q.Set("lease", l.Token)
	return call{method: method, path: queuePath(l.Queue, "/messages/", strconv.FormatUint(l.ID, 10), route), query: q, class: safe, endpoint: -1}
}

// AckBatch acks leases of one queue in one request: the error of each
// (nil when acked), or an error for the whole request.
func (c *Client) AckBatch(ctx context.Context, queue string, leases []Lease) ([]error, error) {
	type item struct {
		ID    uint64 `json:"id"`
		Lease string `json:"lease"`
	}
	if len(leases) == 0 {
		return nil, nil
	}
	in := struct {
		Acks []item `json:"acks"`
	}{}
	for _, l := range leases {
		in.Acks = append(in.Acks, item{l.ID, l.Token})
	}
	return c.settleBatch(ctx, queue, "/acks", in, http.StatusNotFound)
}

// ReleaseBatch releases leases of one queue in one request, each ready
// again after delay.
func (c *Client) ReleaseBatch(ctx context.Context, queue string, leases []Lease, delay time.Duration) ([]error, error) {
	type item struct {
		ID    uint64 `json:"id"`
		Lease string `json:"lease"`
		Delay string `json:"delay,omitempty"`
	}
	if len(leases) == 0 {
		return nil, nil
	}
	in := struct {
		Releases []item `json:"releases"`
	}{}
	d := ""
	if delay > 0 {
		d = delay.String()
	}
	for _, l := range leases {
		in.Releases = append(in.Releases, item{l.ID, l.Token, d})
	}
	return c.settleBatch(ctx, queue, "/releases", in, http.StatusConflict)
}

// settleBatch settles leases in one request. After an attempt with an
// unknown outcome, an item answered doneBefore (an ack's 404, a release's
// 409) was settled by that attempt, as Ack and Release take it.
func (c *Client) settleBatch(ctx context.Context, queue, route string, in any, doneBefore int) ([]error, error) {
	b, h := jsonBody(in)
	var out struct {
		Results []struct {
			ID      uint64 `json:"id"`
			Status  int    `json:"status"`
			Error   string `json:"error"`
			Outcome string `json:"outcome"`
		} `json:"results"`
	}
	resp, err := c.do(ctx, call{method: http.MethodPost, path: queuePath(queue, route), body: b, header: h, class: safe, endpoint: -1})
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return nil, fmt.Errorf("client: POST %s: malformed answer: %w", route, err)
	}
	errs := make([]error, len(out.Results))
	for i, r := range out.Results {
		if r.Status >= 300 && !(resp.afterUnknown && r.Status == doneBefore) {
			body, _ := json.Marshal(map[string]string{"error": r.Error, "outcome": r.Outcome})
			errs[i] = apiError(r.Status, body, "")
		}
	}
	return errs, nil
}

// messageOf reads a delivered message from its headers and body.
func messageOf(resp *response) (*Message, error) {
	h := resp.header
	id, err := strconv.ParseUint(h.Get("Message-Id"), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("client: a delivery without Message-Id")
	}
	m := &Message{ID: id, Body: resp.body, ContentType: h.Get("Content-Type"), Group: h.Get("Message-Group")}
	m.Deliveries, _ = strconv.ParseUint(h.Get("Delivery-Count"), 10, 64)
	m.Enqueued, _ = time.Parse(time.RFC3339, h.Get("Enqueued-At"))
	if q := h.Get("Dead-Letter-Origin-Queue"); q != "" {
		o := &Origin{Queue: q}
		o.ID, _ = strconv.ParseUint(h.Get("Dead-Letter-Origin-Id"), 10, 64)
		o.Deliveries, _ = strconv.ParseUint(h.Get("Dead-Letter-Deliveries"), 10, 64)
		m.Origin = o
	}
	if a := h.Get("Message-Attributes"); a != "" {
		if m.Attributes, err = parseAttributes(json.RawMessage(a)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// batchMessage is a message in raftq's batch JSON: sent in a batch
// enqueue (key, delay), received from a batch pop, a lease of many or a
// peek (id).
type batchMessage struct {
	ID             uint64          `json:"id,omitempty"`
	Body           *string         `json:"body,omitempty"`
	BodyB64        *string         `json:"body_b64,omitempty"`
	ContentType    string          `json:"content_type,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	DelayMS        *int64          `json:"delay_ms,omitempty"`
	Group          string          `json:"group,omitempty"`
	Attributes     json.RawMessage `json:"attributes,omitempty"`
}

func (b batchMessage) message() (Message, error) {
	m := Message{ID: b.ID, ContentType: b.ContentType, Group: b.Group}
	switch {
	case b.Body != nil:
		m.Body = []byte(*b.Body)
	case b.BodyB64 != nil:
		var err error
		if m.Body, err = base64.StdEncoding.DecodeString(*b.BodyB64); err != nil {
			return m, fmt.Errorf("client: malformed body_b64: %w", err)
		}
	}
	if len(b.Attributes) > 0 {
		var err error
		if m.Attributes, err = parseAttributes(b.Attributes); err != nil {
			return m, err
		}
	}
	return m, nil
}

type attributeJSON struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

func attributesJSON(a map[string]Attribute) json.RawMessage {
	m := make(map[string]attributeJSON, len(a))
	for k, v := range a {
		val := v.Value
		if strings.HasPrefix(v.Type, "Binary") {
			val = base64.StdEncoding.EncodeToString([]byte(val))
		}
		m[k] = attributeJSON{Type: v.Type, Value: val}
	}
	b, _ := json.Marshal(m)
	return b
}

func parseAttributes(raw json.RawMessage) (map[string]Attribute, error) {
	var m map[string]attributeJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("client: malformed message attributes: %w", err)
	}
	out := make(map[string]Attribute, len(m))
	for k, v := range m {
		a := Attribute{Type: v.Type, Value: v.Value}
		if strings.HasPrefix(v.Type, "Binary") {
			b, err := base64.StdEncoding.DecodeString(v.Value)
			if err != nil {
				return nil, fmt.Errorf("client: attribute %s: malformed base64", k)
			}
			a.Value = string(b)
		}
		out[k] = a
	}
	return out, nil
}
