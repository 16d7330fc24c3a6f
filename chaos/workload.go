package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome of an operation as the client saw it.
type Outcome string

const (
	OK      Outcome = "ok"      // acknowledged
	Fail    Outcome = "fail"    // definitely did not happen
	Unknown Outcome = "unknown" // may or may not have happened
)

// Op is one recorded client operation.
type Op struct {
	Client  int           `json:"client"` // -1 for the final drain
	Node    uint64        `json:"node"`
	Kind    string        `json:"kind"` // "enqueue" or "dequeue"
	Queue   string        `json:"queue"`
	Value   string        `json:"value,omitempty"` // sent, or received ("" = empty)
	Outcome Outcome       `json:"outcome"`
	Call    time.Duration `json:"call"`            // since the start of the run
	Return  time.Duration `json:"return"`          // since the start of the run
	Index   uint64        `json:"index,omitempty"` // Raft-Index of an acknowledged write
	// Leases: the message, its delivery count and the lease token.
	MsgID      uint64 `json:"msg_id,omitempty"`
	Deliveries uint64 `json:"deliveries,omitempty"`
	Token      string `json:"token,omitempty"`
	Detail     string `json:"detail,omitempty"`
	// Limit names what refused a write (429 or 507 naming max_messages,
	// max_bytes or max_queues, or "alarm" for a disk alarm); its outcome
	// is Fail: nothing of it was stored, on any replica.
	Limit string `json:"limit,omitempty"`
}

// History records operations from many goroutines.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewHistory starts the clock of a run.
func NewHistory() *History { return &History{start: time.Now()} }

// Since is the run's clock.
func (h *History) Since() time.Duration { return time.Since(h.start) }

func (h *History) add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns the operations in call order.
func (h *History) Ops() []Op {
	h.mu.Lock()
	out := append([]Op(nil), h.ops...)
	h.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Call < out[j].Call })
	return out
}

// MarshalJSON writes the history for a failure bundle.
func (h *History) MarshalJSON() ([]byte, error) { return json.Marshal(h.Ops()) }

// Workload is the traffic of a run: single-threaded clients, the first
// ones pinned to one node each, the others picking a node per request.
type Workload struct {
	Clients int     // default 6
	Queues  int     // default 3
	Enqueue float64 // share of enqueues, default 0.45 (queues stay short)
	Think   time.Duration
	Seed    uint64
	// LeaseClients of the spread clients (default 2) use LeaseQueue with
	// leases instead of pops: enqueue, lease (2 s), then ack, release, or
	// let the lease expire.
	LeaseClients int
}

// LeaseQueue is the queue lease clients use; pops never touch it.
const LeaseQueue = "leased"

// leaseTTL is short so that leases expire during a run.
const leaseTTL = "2s"

func (w *Workload) defaults() {
	if w.Clients == 0 {
		w.Clients = 6
	}
	if w.Queues == 0 {
		w.Queues = 3
	}
	if w.Enqueue == 0 {
		w.Enqueue = 0.45
	}
	if w.Think == 0 {
		w.Think = 10 * time.Millisecond
	}
	if w.LeaseClients == 0 {
		w.LeaseClients = 2
	}
}

func queueName(i int) string { return fmt.Sprintf("q%d", i) }

// Run drives traffic until ctx ends.
func (w Workload) Run(ctx context.Context, c *Cluster, h *History) {
	w.defaults()
	var wg sync.WaitGroup
	for i := range w.Clients {
		cl := &client{id: i, c: c, h: h, rng: rand.New(rand.NewPCG(w.Seed, uint64(i)))}
		if i < len(c.Nodes()) {
			cl.pinned = uint64(i + 1)
		}
		leasing := i >= w.Clients-w.LeaseClients
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				q := queueName(cl.rng.IntN(w.Queues))
				if leasing {
					cl.leaseStep(seq)
				} else if cl.rng.Float64() < w.Enqueue {
					cl.enqueue(q, fmt.Sprintf("c%d-%d", cl.id, seq))
				} else {
					cl.dequeue(q)
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(cl.rng.Int64N(int64(w.Think) + 1))):
				}
			}
		}()
	}
	wg.Wait()
}

// leaseStep is one step of a lease client: enqueue half the time; else
// lease and then ack (80%), release (10%) or walk away (10%).
func (cl *client) leaseStep(seq int) {
	if cl.rng.IntN(2) == 0 {
		cl.enqueue(LeaseQueue, fmt.Sprintf("c%d-%d", cl.id, seq))
		return
	}
	op := cl.lease(LeaseQueue, leaseTTL, "")
	if op.Outcome != OK || op.Value == "" {
		return
	}
	switch d := cl.rng.IntN(10); {
	case d < 8:
		cl.settle("ack", op)
	case d < 9:
		cl.settle("release", op)
	}
}

// lease records a lease: Value is the body ("" for 204).
func (cl *client) lease(q, ttl, wait string) Op {
	id := cl.node()
	op := Op{Client: cl.id, Node: id, Kind: "lease", Queue: q, Call: cl.h.Since()}
	url := fmt.Sprintf("%s/queues/%s/leases?ttl=%s", cl.c.Node(id).API, q, ttl)
	if wait != "" {
		url += "&wait=" + wait
	}
	resp, body, written, err := do(cl.http(), http.MethodPost, url, nil)
	op.Return = cl.h.Since()
	op.Outcome, op.Detail = classify(resp, body, written, err, http.StatusOK, http.StatusNoContent)
	op.Index = raftIndex(resp)
	if op.Outcome == OK && resp.StatusCode == http.StatusOK {
		op.Value = string(body)
		op.MsgID, _ = strconv.ParseUint(resp.Header.Get("Message-Id"), 10, 64)
		op.Deliveries, _ = strconv.ParseUint(resp.Header.Get("Delivery-Count"), 10, 64)
		op.Token = resp.Header.Get("Lease-Token")
	}
	cl.h.add(op)
	return op
}

// settle acks or releases a leased message, recorded as kind "ack" or
// "release".
func (cl *client) settle(kind string, leased Op) Op {
	id := cl.node()
	op := Op{Client: cl.id, Node: id, Kind: kind, Queue: leased.Queue, Value: leased.Value, MsgID: leased.MsgID, Token: leased.Token, Call: cl.h.Since()}
	api := cl.c.Node(id).API
	method, url := http.MethodDelete, fmt.Sprintf("%s/queues/%s/messages/%d?lease=%s", api, leased.Queue, leased.MsgID, leased.Token)
	if kind == "release" {
		method, url = http.MethodPost, fmt.Sprintf("%s/queues/%s/messages/%d/release?lease=%s", api, leased.Queue, leased.MsgID, leased.Token)
	}
	resp, body, written, err := do(cl.http(), method, url, nil)
	op.Return = cl.h.Since()
	op.Outcome, op.Detail = classify(resp, body, written, err, http.StatusNoContent)
	if op.Outcome == Fail && resp != nil {
		switch resp.StatusCode { // legitimate answers, checked against the history
		case http.StatusConflict:
			op.Detail = "lease lost"
		case http.StatusNotFound:
			op.Detail = "no such message"
		}
	}
	cl.h.add(op)
	return op
}

type client struct {
	id     int
	pinned uint64
	c      *Cluster
	h      *History
	rng    *rand.Rand
}

// opClient waits longer than the server's request timeout, so that a
// server's own 503 normally arrives before the client gives up.
func (cl *client) http() *http.Client {
	return &http.Client{Timeout: cl.c.cfg.RequestTimeout + 2*time.Second}
}

func (cl *client) node() uint64 {
	if cl.pinned != 0 {
		return cl.pinned
	}
	return uint64(1 + cl.rng.IntN(len(cl.c.Nodes())))
}

func (cl *client) enqueue(q, value string) Op {
	id := cl.node()
	op := Op{Client: cl.id, Node: id, Kind: "enqueue", Queue: q, Value: value, Call: cl.h.Since()}
	resp, body, written, err := do(cl.http(), http.MethodPost, cl.c.Node(id).API+"/queues/"+q, []byte(value))
	op.Return = cl.h.Since()
	op.Outcome, op.Detail = classify(resp, body, written, err, http.StatusCreated)
	op.Index = raftIndex(resp)
	op.Limit = refusedBy(resp, body)
	cl.h.add(op)
	return op
}

func (cl *client) dequeue(q string) Op {
	id := cl.node()
	op := Op{Client: cl.id, Node: id, Kind: "dequeue", Queue: q, Call: cl.h.Since()}
	resp, body, written, err := do(cl.http(), http.MethodGet, cl.c.Node(id).API+"/queues/"+q, nil)
	op.Return = cl.h.Since()
	op.Outcome, op.Detail = classify(resp, body, written, err, http.StatusOK, http.StatusNoContent)
	op.Index = raftIndex(resp)
	if op.Outcome == OK {
		op.Value = string(body)
		if resp.StatusCode == http.StatusOK && op.Value == "" {
			op.Outcome, op.Detail = Unknown, "200 with an empty body"
		}
	}
	cl.h.add(op)
	return op
}

func raftIndex(resp *http.Response) uint64 {
	if resp == nil {
		return 0
	}
	i, _ := strconv.ParseUint(resp.Header.Get("Raft-Index"), 10, 64)
	return i
}

// do sends one request. written reports whether any attempt finished
// writing the request: Go's transport silently retries an idempotent
// method (GET, so a pop) on a fresh connection when a reused one breaks,
// so a "connection refused" can hide a first attempt that a server read
// and applied.
func do(hc *http.Client, method, url string, body []byte) (resp *http.Response, b []byte, written bool, err error) {
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, false, err
	}
	resp, err = hc.Do(req)
	if err != nil {
		return nil, nil, wrote.Load(), err
	}
	defer resp.Body.Close()
	b, err = io.ReadAll(resp.Body)
	return resp, b, true, err
}

// classify turns an HTTP exchange into an outcome. A request that no
// server ever read (refused or failed before it was written), a 503 or a
// 429 saying "not_applied", and a 429 or 507 naming the limit or the disk
// alarm that refused it definitely failed; a timeout, a broken connection
// or any other 503 is unknown. Any other status is a failure the checker
// reports.
func classify(resp *http.Response, body []byte, written bool, err error, okStatus ...int) (Outcome, string) {
	if err != nil {
		if !written && !isTimeout(err) {
			return Fail, err.Error()
		}
		return Unknown, err.Error()
	}
	for _, s := range okStatus {
		if resp.StatusCode == s {
			return OK, ""
		}
	}
	var e errorAnswer
	json.Unmarshal(body, &e)
	switch resp.StatusCode {
	case http.StatusServiceUnavailable:
		if e.Outcome == "not_applied" {
			return Fail, e.Error
		}
		return Unknown, e.Error
	case http.StatusTooManyRequests, http.StatusInsufficientStorage:
		// Refused before the log (backpressure, "not_applied"), or by a
		// limit or a disk alarm, which every replica decides alike at the
		// same index: nothing was stored. Any other 429 or 507 is not
		// an answer a write gets here.
		if e.Outcome == "not_applied" || e.Limit != "" || len(e.Alarms) > 0 {
			return Fail, e.Error
		}
	}
	return Fail, fmt.Sprintf("unexpected status %d: %s", resp.StatusCode, body)
}

// errorAnswer is the JSON of raftq's error answers, as far as the
// workload reads it.
type errorAnswer struct {
	Error   string   `json:"error"`
	Outcome string   `json:"outcome"`
	Limit   string   `json:"limit"`
	Alarms  []uint64 `json:"alarms"`
}

// refusedBy names the limit that refused a write ("alarm" for a disk
// alarm), or "" if none did.
func refusedBy(resp *http.Response, body []byte) string {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusInsufficientStorage) {
		return ""
	}
	var e errorAnswer
	json.Unmarshal(body, &e)
	switch {
	case e.Limit != "":
		return e.Limit
	case len(e.Alarms) > 0:
		return "alarm"
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Drain empties every queue after the faults, round robin over the nodes,
// recording each dequeue as client -1. It returns once every queue
// answered 204 (empty) or the deadline passed.
func Drain(ctx context.Context, c *Cluster, h *History, queues int, timeout time.Duration) error {
	cl := &client{id: -1, c: c, h: h, rng: rand.New(rand.NewPCG(1, 2))}
	deadline := time.Now().Add(timeout)
	for i := range queues {
		q := queueName(i)
		for k := 0; ; k++ {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("chaos: drain of %s did not finish in %v", q, timeout)
			}
			members := c.Members()
			cl.pinned = members[k%len(members)].ID
			op := cl.dequeue(q)
			if op.Outcome == OK && op.Value == "" {
				break
			}
			if op.Outcome != OK {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	return drainLeases(ctx, c, cl, deadline)
}

// drainLeases leases and acks LeaseQueue until no message is ready,
// leased or delayed in it (expired leases come back after their ttl).
func drainLeases(ctx context.Context, c *Cluster, cl *client, deadline time.Time) error {
	for k := 0; ; k++ {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("chaos: drain of %s did not finish", LeaseQueue)
		}
		members := c.Members()
		cl.pinned = members[k%len(members)].ID
		op := cl.lease(LeaseQueue, "30s", "1s")
		switch {
		case op.Outcome == OK && op.Value != "":
			for cl.settle("ack", op).Outcome == Unknown && time.Now().Before(deadline) {
			}
		case op.Outcome == OK:
			depths, err := c.QueueDepths(ctx, cl.pinned)
			if err == nil && depths[LeaseQueue] == 0 {
				return nil
			}
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// QueueDepths reads GET /queues from one node: the messages each queue
// holds (ready, leased or delayed) (a linearizable read served
// from that node's own state).
func (c *Cluster) QueueDepths(ctx context.Context, id uint64) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Node(id).API+"/queues", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: c.cfg.RequestTimeout + time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("chaos: node %d GET /queues: %s", id, resp.Status)
	}
	var v struct {
		Queues []struct {
			Name    string `json:"name"`
			Depth   int    `json:"depth"`
			Leased  int    `json:"leased"`
			Delayed int    `json:"delayed"`
		} `json:"queues"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, q := range v.Queues {
		out[q.Name] = q.Depth + q.Leased + q.Delayed
	}
	return out, nil
}
