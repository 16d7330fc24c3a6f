// Package client is raftq's Go client: the queue, lease and management
// calls of raftq's HTTP API over several nodes, with the retries raftq's
// guarantees allow and a consumer loop (Consume) that gets leases, lease
// renewal and acks right.
//
// Retries. A call goes to the endpoint that answered last, and on a
// connection error or a 503 moves to the next one, with jittered
// exponential backoff, until it succeeds, its context ends, or the retry
// policy's attempts are spent. A write is retried only where raftq's
// answer allows it: when it was "not_applied" (it never entered the log),
// or when its outcome is unknown and retrying it cannot store it twice
// (an enqueue carries an idempotency key, which Enqueue makes for every
// logical send unless given one; a lease that was lost expires and comes
// back; an ack, release or extend acts on one lease). A plain Dequeue
// (an at-most-once pop) is never retried once it may have been applied:
// use leases for at-least-once delivery. Queue and cluster limits (429
// queue full, 507) are returned at once unless WithWaitWhenFull.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Client calls raftq's HTTP API on a set of nodes. It is safe for
// concurrent use.
type Client struct {
	endpoints []*url.URL
	hc        *http.Client
	// hcOnce sends the calls that must not be sent twice (class
	// notApplied) on fresh connections: Go's transport silently resends a
	// GET whose reused connection broke, which would pop twice.
	hcOnce    *http.Client
	tlsConfig *tls.Config
	token     string
	retry     RetryPolicy
	waitFull  bool
	current   atomic.Uint32 // the endpoint that answered last
}

// RetryPolicy bounds retries: at most Attempts tries in all, waiting
// between them a random time up to Base·2ⁿ, capped at Max.
type RetryPolicy struct {
	Attempts  int
	Base, Max time.Duration
}

// DefaultRetry is the policy of a Client made without WithRetry: about 20
// seconds of tries, enough for a leader election on a busy machine.
var DefaultRetry = RetryPolicy{Attempts: 12, Base: 50 * time.Millisecond, Max: 2 * time.Second}

// Option configures a Client.
type Option func(*Client) error

// WithToken sends token as a bearer token with every request (raftq's
// --auth-token-file).
func WithToken(token string) Option {
	return func(c *Client) error { c.token = token; return nil }
}

// WithTLS trusts the CA in caFile ("" for the system's) and presents the
// client certificate in certFile and keyFile (both "" for none).
func WithTLS(caFile, certFile, keyFile string) Option {
	return func(c *Client) error {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("client: CA file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("client: CA file %s holds no PEM certificate", caFile)
			}
		}
		if (certFile == "") != (keyFile == "") {
			return errors.New("client: a client certificate needs both its certificate and its key file")
		}
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fmt.Errorf("client: client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		c.tlsConfig = cfg
		return nil
	}
}

// WithHTTPClient uses hc for every request (its Timeout should exceed the
// longest wait asked for; per-call contexts are the better bound). With
// an *http.Transport, the calls that must not be sent twice (pops, purges,
// membership changes) use a copy of it without keep-alives; with another
// RoundTripper, which may resend a request on a broken connection, a pop
// could be applied twice.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error { c.hc = hc; return nil }
}

// WithRetry sets the retry policy.
func WithRetry(p RetryPolicy) Option {
	return func(c *Client) error {
		if p.Attempts < 1 || p.Base <= 0 || p.Max < p.Base {
			return errors.New("client: a retry policy has 1 attempt or more and 0 < Base ≤ Max")
		}
		c.retry = p
		return nil
	}
}

// WithWaitWhenFull retries writes refused by a limit (ErrQueueFull,
// ErrStorageFull) and by backpressure (ErrOverloaded) until they are
// taken or the call's context ends, instead of returning at once.
func WithWaitWhenFull() Option {
	return func(c *Client) error { c.waitFull = true; return nil }
}

// New returns a client of the nodes whose client API URLs are endpoints
// (http://host:port or https://host:port).
func New(endpoints []string, opts ...Option) (*Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	c := &Client{retry: DefaultRetry}
	for _, e := range endpoints {
		u, err := url.Parse(strings.TrimRight(strings.TrimSpace(e), "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("client: endpoint %q is not an http(s)://host:port URL", e)
		}
		c.endpoints = append(c.endpoints, u)
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = c.tlsConfig
		tr.MaxIdleConnsPerHost = 64
		c.hc = &http.Client{Transport: tr}
	}
	c.hcOnce = c.hc
	if tr, ok := c.hc.Transport.(*http.Transport); ok {
		once := tr.Clone()
		once.DisableKeepAlives = true
		c.hcOnce = &http.Client{Transport: once, Timeout: c.hc.Timeout}
	}
	return c, nil
}

// Endpoints are the client's node URLs.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.endpoints))
	for i, u := range c.endpoints {
		out[i] = u.String()
	}
	return out
}

// Close closes idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections(); c.hcOnce.CloseIdleConnections() }

// retryClass says when a call may be sent again after a failure.
type retryClass int

const (
	// safe: a read, or a write whose repetition changes nothing more
	// (an enqueue with a key, a lease, a config): any failure is retried.
	safe retryClass = iota
	// notApplied: only failures that say the write never happened (a
	// connection refused, a 503 or 429 "not_applied").
	notApplied
)

// call is one API call.
type call struct {
	method, path string
	query        url.Values
	body         []byte
	header       http.Header
	class        retryClass
	endpoint     int  // ≥ 0: only this endpoint, no moving on
	once         bool // one attempt only
}

// response is a call's answer.
type response struct {
	status int
	header http.Header
	body   []byte
	// afterUnknown: an earlier attempt failed with an unknown outcome.
	afterUnknown bool
}

// do runs cl with retries, returning the answer of a 2xx, or an error
// (*Error for an API refusal).
func (c *Client) do(ctx context.Context, cl call) (*response, error) {
	var last, lastAPI error // the last failure, and the last refusal raftq answered
	unknown := false        // an earlier attempt may have been applied
	tries := 0              // attempts counted against the policy: not a limit's refusal under WithWaitWhenFull
	for attempt := 0; ; attempt++ {
		ep := int(c.current.Load()) % len(c.endpoints)
		if cl.endpoint >= 0 {
			ep = cl.endpoint
		}
		resp, err := c.once(ctx, c.endpoints[ep], cl)
		if err == nil {
			c.current.Store(uint32(ep))
			resp.afterUnknown = unknown
			return resp, nil
		}
		err = withUnknown(err, unknown)
		retry, moveOn, applied := c.retryable(cl, err)
		unknown = unknown || applied
		last = err
		if !c.waitFull || !isLimit(err) {
			tries++
		}
		var e *Error
		if errors.As(err, &e) {
			lastAPI = err
		}
		if !retry || cl.once || tries >= c.retry.Attempts || ctx.Err() != nil {
			if ctx.Err() != nil && lastAPI != nil {
				return nil, lastAPI // what kept it from succeeding, rather than the cut-off attempt
			}
			return nil, last
		}
		if moveOn && cl.endpoint < 0 {
			c.current.CompareAndSwap(uint32(ep), uint32((ep+1)%len(c.endpoints)))
		}
		if err := sleep(ctx, c.backoff(attempt)); err != nil {
			if lastAPI != nil {
				return nil, lastAPI
			}
			return nil, last
		}
	}
}

// withUnknown marks an API error that followed an attempt that may have
// been applied (see Error.AfterUnknown).
func withUnknown(err error, unknown bool) error {
	var e *Error
	if unknown && errors.As(err, &e) {
		e.AfterUnknown = true
	}
	return err
}

// retryable says whether err allows another attempt, whether to try
// another node, and whether the failed attempt may have been applied.
func (c *Client) retryable(cl call, err error) (retry, moveOn, applied bool) {
	var e *Error
	if !errors.As(err, &e) { // the connection failed
		sent := !isDialError(err)
		return cl.class == safe || !sent, true, sent
	}
	notApplied := e.Outcome == "not_applied"
	switch {
	case e.Status == http.StatusServiceUnavailable:
		return cl.class == safe || notApplied, true, !notApplied
	case errors.Is(err, ErrOverloaded):
		return c.waitFull, true, false
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrStorageFull):
		return c.waitFull, false, false
	}
	return false, false, false
}

// isLimit reports a refusal WithWaitWhenFull waits out.
func isLimit(err error) bool {
	return errors.Is(err, ErrOverloaded) || errors.Is(err, ErrQueueFull) || errors.Is(err, ErrStorageFull)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (c *Client) backoff(attempt int) time.Duration {
	d := c.retry.Base << min(attempt, 20)
	if d > c.retry.Max || d <= 0 {
		d = c.retry.Max
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// once sends cl to one endpoint.
func (c *Client) once(ctx context.Context, ep *url.URL, cl call) (*response, error) {
	u := *ep
	unescaped, err := url.PathUnescape(cl.path) // cl.path has its segments escaped
	if err != nil {
		return nil, fmt.Errorf("client: path %q: %w", cl.path, err)
	}
	u.Path, u.RawPath = ep.Path+unescaped, ep.EscapedPath()+cl.path
	u.RawQuery = cl.query.Encode()
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for k, vs := range cl.header {
		req.Header[k] = vs
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := c.hc
	if cl.class == notApplied {
		hc = c.hcOnce
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", cl.method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: reading the answer: %w", cl.method, u.Redacted(), err)
	}
	if resp.StatusCode >= 300 {
		return nil, apiError(resp.StatusCode, b, ep.String())
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// getJSON runs a read and decodes its JSON answer into v.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	return c.callJSON(ctx, call{method: http.MethodGet, path: path, query: q, class: safe, endpoint: -1}, v)
}

// callJSON runs cl and decodes its JSON answer (if any) into v.
func (c *Client) callJSON(ctx context.Context, cl call, v any) error {
	resp, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	if v == nil || len(resp.body) == 0 || resp.status == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		return fmt.Errorf("client: %s %s: malformed answer: %w", cl.method, cl.path, err)
	}
	return nil
}

// jsonBody encodes v for a request with a JSON body.
func jsonBody(v any) ([]byte, http.Header) {
	b, _ := json.Marshal(v) // the client's own request types always marshal
	return b, http.Header{"Content-Type": {"application/json"}}
}

func queuePath(queue string, rest ...string) string {
	return "/queues/" + url.PathEscape(queue) + strings.Join(rest, "")
}
