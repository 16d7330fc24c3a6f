package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/queuefsm"
	"github.com/raftq/raftq/raftnode"
	"github.com/raftq/raftq/wal"
)

// service implements httpapi.Queue and httpapi.Cluster over a raft node and
// the queue state machine it replicates.
type service struct {
	node    *raftnode.Node
	fsm     *notifyingFSM
	clock   clock
	stateMu sync.Mutex // one /debug/state capture at a time
	store   *wal.Store // for its disk usage
	started time.Time
	metrics *promMetrics
}

// propose stamps c with this node's clock and replicates it. The queue
// name of an op on a queue is checked first; the cluster's ops (tick,
// set limits, alarm) name none.
func (s *service) propose(ctx context.Context, c queuefsm.Command) (raftnode.Applied, error) {
	return s.proposeWith(ctx, c, s.node.Propose)
}

// proposeControl is propose for this node's own loops (the tick, the
// disk alarm): backpressure does not refuse them (raftnode.ProposeControl),
// so a node under load still moves its clock and raises its alarm. Each
// loop has one proposal out at a time.
func (s *service) proposeControl(ctx context.Context, c queuefsm.Command) (raftnode.Applied, error) {
	return s.proposeWith(ctx, c, s.node.ProposeControl)
}

func (s *service) proposeWith(ctx context.Context, c queuefsm.Command, propose func(context.Context, []byte) (raftnode.Applied, error)) (raftnode.Applied, error) {
	switch c.Op {
	case queuefsm.OpTick, queuefsm.OpSetLimits, queuefsm.OpAlarm:
	default:
		if err := checkName(c.Queue); err != nil {
			return raftnode.Applied{}, err
		}
	}
	c.Time, c.Proposer, c.Epoch = s.clock.now(), s.node.ID(), s.clock.epoch
	a, err := propose(ctx, c.Encode())
	if err != nil {
		return a, unavailable(err)
	}
	return a, nil
}

func (s *service) Enqueue(ctx context.Context, queue, contentType string, body []byte, opts httpapi.EnqueueOptions) (httpapi.Enqueued, httpapi.LogPosition, error) {
	if opts.IdempotencyKey != "" {
		if err := queuefsm.ValidateIdempotencyKey(opts.IdempotencyKey); err != nil {
			return httpapi.Enqueued{}, httpapi.LogPosition{}, fmt.Errorf("%w: %w", httpapi.ErrInvalid, err)
		}
	}
	attrs := fsmAttributes(opts.Attributes)
	cost := queuefsm.Cost(contentType, len(body), opts.Group, attrs) + queuefsm.KeyCost(opts.IdempotencyKey)
	if err := s.admit(ctx, queue, opts.IdempotencyKey, 1, cost); err != nil {
		return httpapi.Enqueued{}, httpapi.LogPosition{}, err
	}
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: queue, ContentType: contentType,
		IdempotencyKey: opts.IdempotencyKey, Delay: opts.Delay.Milliseconds(), Body: body,
		Flags: flags(opts), Group: opts.Group, Attributes: attrs})
	if err != nil {
		return httpapi.Enqueued{}, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.EnqueueResult](a)
	return httpapi.Enqueued{ID: r.ID, Replay: r.Replay}, position(a), err
}

func (s *service) Dequeue(ctx context.Context, queue string) (httpapi.Message, bool, httpapi.LogPosition, error) {
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpDequeue, Queue: queue})
	if err != nil {
		return httpapi.Message{}, false, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.DequeueResult](a)
	return apiMessage(r.Message, r.Now), r.Found, position(a), err
}

// EnqueueBatch appends msgs in one entry. The cheap check before it
// counts every message (a batch with keys already seen may be refused
// where the state machine would take it; Apply decides).
func (s *service) EnqueueBatch(ctx context.Context, queue string, msgs []httpapi.NewMessage) ([]httpapi.Enqueued, httpapi.LogPosition, error) {
	items := make([]queuefsm.BatchItem, len(msgs))
	var cost int64
	keyed := false
	for i, m := range msgs {
		o := m.Options
		if o.IdempotencyKey != "" {
			if err := queuefsm.ValidateIdempotencyKey(o.IdempotencyKey); err != nil {
				return nil, httpapi.LogPosition{}, fmt.Errorf("%w: message %d: %w", httpapi.ErrInvalid, i, err)
			}
			keyed = true
		}
		items[i] = queuefsm.BatchItem{ContentType: m.ContentType, Body: m.Body, IdempotencyKey: o.IdempotencyKey,
			Delay: o.Delay.Milliseconds(), Flags: flags(o), Group: o.Group, Attributes: fsmAttributes(o.Attributes)}
		cost += queuefsm.Cost(m.ContentType, len(m.Body), o.Group, items[i].Attributes) + queuefsm.KeyCost(o.IdempotencyKey)
	}
	if !keyed {
		if err := s.admit(ctx, queue, "", len(msgs), cost); err != nil {
			return nil, httpapi.LogPosition{}, err
		}
	}
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpBatch, Queue: queue, Items: items})
	if err != nil {
		return nil, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.BatchResult](a)
	out := make([]httpapi.Enqueued, len(r.IDs))
	for i, id := range r.IDs {
		out[i] = httpapi.Enqueued{ID: id, Replay: r.Replay != nil && r.Replay[i]}
	}
	return out, position(a), err
}

func flags(o httpapi.EnqueueOptions) byte {
	if o.Dedupe {
		return queuefsm.FlagDedupe
	}
	return 0
}

func fsmAttributes(in []httpapi.Attribute) []queuefsm.Attribute {
	if len(in) == 0 {
		return nil
	}
	out := make([]queuefsm.Attribute, len(in))
	for i, a := range in {
		out[i] = queuefsm.Attribute(a)
	}
	return out
}

func (s *service) PopMany(ctx context.Context, queue string, max int) ([]httpapi.Message, httpapi.LogPosition, error) {
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpPopMany, Queue: queue, Max: uint64(max)})
	if err != nil {
		return nil, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.PopManyResult](a)
	out := make([]httpapi.Message, len(r.Messages))
	for i, m := range r.Messages {
		out[i] = apiMessage(m, r.Now)
	}
	return out, position(a), err
}

// apiMessage is m as the API shows it, its enqueue time on this node's
// clock given the state machine's clock now.
func apiMessage(m queuefsm.Message, now int64) httpapi.Message {
	out := httpapi.Message{ID: m.ID, ContentType: m.ContentType, Body: m.Body, Deliveries: m.Deliveries, Group: m.Group,
		Enqueued: localTime(m.Enqueued, now).Truncate(time.Second)}
	if o := m.Origin; o != nil {
		out.Origin = &httpapi.Origin{Queue: o.Queue, ID: o.ID, Deliveries: o.Deliveries}
	}
	if len(m.Attributes) > 0 {
		out.Attributes = make([]httpapi.Attribute, len(m.Attributes))
		for i, a := range m.Attributes {
			out.Attributes[i] = httpapi.Attribute(a)
		}
	}
	return out
}

func (s *service) Lease(ctx context.Context, queue string, ttl time.Duration) (httpapi.Lease, bool, httpapi.LogPosition, error) {
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpLease, Queue: queue, TTL: ttl.Milliseconds()})
	if err != nil {
		return httpapi.Lease{}, false, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.DequeueResult](a)
	if r.Found && r.Message.Deliveries > 1 && s.metrics != nil {
		s.metrics.redelivered.Inc()
	}
	return httpapi.Lease{Message: apiMessage(r.Message, r.Now), Token: r.Token, Expires: localTime(r.Expires, r.Now)}, r.Found, position(a), err
}

func (s *service) LeaseMany(ctx context.Context, queue string, ttl time.Duration, max int) ([]httpapi.Lease, httpapi.LogPosition, error) {
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpLeaseMany, Queue: queue, TTL: ttl.Milliseconds(), Max: uint64(max)})
	if err != nil {
		return nil, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.LeaseManyResult](a)
	out := make([]httpapi.Lease, len(r.Leases))
	for i, l := range r.Leases {
		if l.Message.Deliveries > 1 && s.metrics != nil {
			s.metrics.redelivered.Inc()
		}
		out[i] = httpapi.Lease{Message: apiMessage(l.Message, r.Now), Token: l.Token, Expires: localTime(l.Expires, r.Now)}
	}
	return out, position(a), err
}

func (s *service) Ack(ctx context.Context, queue string, id uint64, token string) (httpapi.LogPosition, error) {
	return s.done(ctx, queuefsm.Command{Op: queuefsm.OpAck, Queue: queue, ID: id, Token: token})
}

func (s *service) Release(ctx context.Context, queue string, id uint64, token string, delay time.Duration) (httpapi.LogPosition, error) {
	return s.done(ctx, queuefsm.Command{Op: queuefsm.OpRelease, Queue: queue, ID: id, Token: token, Delay: delay.Milliseconds()})
}

func (s *service) done(ctx context.Context, c queuefsm.Command) (httpapi.LogPosition, error) {
	a, err := s.propose(ctx, c)
	if err != nil {
		return httpapi.LogPosition{}, err
	}
	_, err = result[queuefsm.Done](a)
	return position(a), err
}

func (s *service) Extend(ctx context.Context, queue string, id uint64, token string, ttl time.Duration) (time.Time, httpapi.LogPosition, error) {
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpExtend, Queue: queue, ID: id, Token: token, TTL: ttl.Milliseconds()})
	if err != nil {
		return time.Time{}, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.LeaseResult](a)
	return localTime(r.Expires, r.Now), position(a), err
}

// localTime turns a time of the state machine's clock into this node's
// wall clock: that clock runs at the pace of real time but may stand apart
// from any node's wall clock, so only the distance from its now counts.
func localTime(at, now int64) time.Time {
	return time.Now().Add(time.Duration(at-now) * time.Millisecond)
}

func (s *service) AwaitReady(ctx context.Context, queue string, want int) (httpapi.Turn, error) {
	if err := checkName(queue); err != nil {
		return nil, err
	}
	return s.fsm.await(ctx, s.node.View, queue, want)
}

func (s *service) HasReady(ctx context.Context, queue string) (bool, error) {
	if err := s.node.ReadBarrier(ctx); err != nil {
		return false, unavailable(err)
	}
	ready := false
	s.node.View(func() { ready = s.fsm.Ready(queue) > 0 })
	return ready, nil
}

// stopWaiting answers every long poll at once (shutdown).
func (s *service) stopWaiting() { s.fsm.stopWaiting() }

func (s *service) Queues(ctx context.Context) ([]httpapi.QueueInfo, error) {
	if err := s.node.ReadBarrier(ctx); err != nil {
		return nil, unavailable(err)
	}
	var out []httpapi.QueueInfo
	s.node.View(func() {
		for _, q := range s.fsm.Queues() {
			out = append(out, httpapi.QueueInfo{Name: q.Name, Depth: q.Depth, Leased: q.Leased, Delayed: q.Delayed})
		}
	})
	return out, nil
}

// tick moves the state machine's clock when something is due: the leader
// proposes a tick, at most every interval, once the clock would have
// passed the earliest lease or delay end or idempotency key expiry, so
// leases expire, delayed messages become ready and forgotten keys stop
// counting against the limits without client traffic. A cluster with
// nothing due writes nothing.
func (s *service) tick(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() {
		if s.node.Status().Leader != s.node.ID() {
			return
		}
		pending := false
		s.node.View(func() {
			at, ok := s.fsm.NextDeadline()
			pending = ok && at <= s.fsm.estimatedNow()
		})
		if pending {
			pctx, cancel := context.WithTimeout(ctx, interval*4)
			s.proposeControl(pctx, queuefsm.Command{Op: queuefsm.OpTick})
			cancel()
		}
	})
}

// every calls fn at each interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
	}
}

// checkName refuses an invalid queue name before it costs a log entry; the
// state machine checks again, deterministically, when applying.
func checkName(queue string) error {
	if err := queuefsm.ValidateName(queue); err != nil {
		return fmt.Errorf("%w: %w", httpapi.ErrInvalid, err)
	}
	return nil
}

func position(a raftnode.Applied) httpapi.LogPosition {
	return httpapi.LogPosition{Index: a.Index, Term: a.Term}
}

// result unpacks the state machine's answer. An error answer means the
// command was refused identically on every replica.
func result[T any](a raftnode.Applied) (T, error) {
	var zero T
	switch r := a.Result.(type) {
	case T:
		return r, nil
	case error:
		return zero, apiErr(r)
	default:
		return zero, fmt.Errorf("raftq: unexpected state machine result %T", a.Result)
	}
}

// apiErr maps a refusal of the state machine (Apply's result, or a read's
// error) to the API's errors; a limit's refusal keeps what it names.
func apiErr(err error) error {
	var le *queuefsm.LimitError
	var ne *queuefsm.NoSpaceError
	switch {
	case errors.As(err, &le):
		sentinel := httpapi.ErrStorageFull
		if errors.Is(err, queuefsm.ErrQueueFull) {
			sentinel = httpapi.ErrQueueFull
		}
		return &httpapi.LimitError{Err: sentinel, Limit: le.Limit, Queue: le.Queue, Value: le.Value, Usage: le.Usage, Request: le.Request}
	case errors.As(err, &ne):
		return &httpapi.AlarmError{Nodes: ne.Nodes}
	case errors.Is(err, queuefsm.ErrInvalidName), errors.Is(err, queuefsm.ErrInvalidArg):
		return fmt.Errorf("%w: %w", httpapi.ErrInvalid, err)
	case errors.Is(err, queuefsm.ErrNoMessage), errors.Is(err, queuefsm.ErrNoQueue):
		return fmt.Errorf("%w: %w", httpapi.ErrNotFound, err)
	case errors.Is(err, queuefsm.ErrLeaseLost):
		return fmt.Errorf("%w: %w", httpapi.ErrConflict, err)
	case errors.Is(err, queuefsm.ErrKeyReused):
		return fmt.Errorf("%w: %w", httpapi.ErrUnprocessable, err)
	case errors.Is(err, queuefsm.ErrTooLarge):
		return fmt.Errorf("%w: %w", httpapi.ErrTooLarge, err)
	}
	return err
}

// unavailable marks raft-level failures (no leader, deadline, stopping),
// and says when a write definitely did not happen.
func unavailable(err error) error {
	if errors.Is(err, raftnode.ErrTooManyRequests) { // backpressure: refused before raft saw it
		return fmt.Errorf("%w: %w: %w", httpapi.ErrOverloaded, httpapi.ErrNotApplied, err)
	}
	if errors.Is(err, raftnode.ErrNoLeader) {
		return fmt.Errorf("%w: %w: %w", httpapi.ErrUnavailable, httpapi.ErrNotApplied, err)
	}
	return fmt.Errorf("%w: %w", httpapi.ErrUnavailable, err)
}

// Counters are the raft node's counters, by name.
func (s *service) Counters() map[string]uint64 {
	c := s.node.Counters()
	return map[string]uint64{"readys": c.Readys, "saved_entries": c.SavedEntries, "synced_readys": c.SyncedReadys,
		"applied_entries": c.AppliedEntries, "messages_sent": c.MessagesSent, "groups": c.Groups,
		"grouped_commands": c.GroupedCommands, "merged_forwards": c.MergedForwards,
		"merged_commands": c.MergedCommands, "read_rounds": c.ReadRounds,
		"gc_cpu_us": gcCPUMicros()}
}

// gcCPUMicros is the CPU time this process's garbage collector has used,
// as the runtime estimates it (updated at each collection).
func gcCPUMicros() uint64 {
	sample := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return uint64(sample[0].Value.Float64() * 1e6)
}

// LocalState hashes the state machine at this node's applied index. The
// hash is computed from a captured view, off the node's lock: polled
// against a deep queue it must not stall applying, ticks or heartbeats.
func (s *service) LocalState() (httpapi.LocalState, error) {
	// One at a time: each capture keeps a version of the state alive until
	// it is written and makes later changes copy what they touch.
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	applied, write := s.node.CaptureState()
	h := sha256.New()
	if err := write(h); err != nil {
		return httpapi.LocalState{}, fmt.Errorf("raftq: encode state for its hash: %w", err)
	}
	return httpapi.LocalState{ID: s.node.ID(), Leader: s.node.Status().Leader, Applied: applied, Hash: hex.EncodeToString(h.Sum(nil))}, nil
}
