package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/queuefsm"
	"github.com/raftq/raftq/raftnode"
)

// service implements httpapi.Queue and httpapi.Cluster over a raft node and
// the queue state machine it replicates.
type service struct {
	node    *raftnode.Node
	fsm     *notifyingFSM
	clock   clock
	stateMu sync.Mutex // one /debug/state capture at a time
}

// propose stamps c with this node's clock and replicates it. The queue
// name of an op on a queue is checked first; the cluster's ops (tick,
// set limits, alarm) name none, and backpressure does not refuse them
// (raftnode.ProposeControl): a node under load still moves its clock,
// raises its alarm, and takes an operator's limits.
func (s *service) propose(ctx context.Context, c queuefsm.Command) (raftnode.Applied, error) {
	propose := s.node.Propose
	switch c.Op {
	case queuefsm.OpTick, queuefsm.OpSetLimits, queuefsm.OpAlarm:
		propose = s.node.ProposeControl
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
	cost := queuefsm.MessageCost(contentType, len(body)) + queuefsm.KeyCost(opts.IdempotencyKey)
	if err := s.admit(ctx, queue, opts.IdempotencyKey, 1, cost); err != nil {
		return httpapi.Enqueued{}, httpapi.LogPosition{}, err
	}
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpEnqueue, Queue: queue, ContentType: contentType,
		IdempotencyKey: opts.IdempotencyKey, Delay: opts.Delay.Milliseconds(), Body: body})
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
	return apiMessage(r.Message), r.Found, position(a), err
}

func (s *service) EnqueueBatch(ctx context.Context, queue string, msgs []httpapi.Message) ([]uint64, httpapi.LogPosition, error) {
	items := make([]queuefsm.BatchItem, len(msgs))
	var cost int64
	for i, m := range msgs {
		items[i] = queuefsm.BatchItem{ContentType: m.ContentType, Body: m.Body}
		cost += queuefsm.MessageCost(m.ContentType, len(m.Body))
	}
	if err := s.admit(ctx, queue, "", len(msgs), cost); err != nil {
		return nil, httpapi.LogPosition{}, err
	}
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpBatch, Queue: queue, Items: items})
	if err != nil {
		return nil, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.BatchResult](a)
	return r.IDs, position(a), err
}

func (s *service) PopMany(ctx context.Context, queue string, max int) ([]httpapi.Message, httpapi.LogPosition, error) {
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpPopMany, Queue: queue, Max: uint64(max)})
	if err != nil {
		return nil, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.PopManyResult](a)
	out := make([]httpapi.Message, len(r.Messages))
	for i, m := range r.Messages {
		out[i] = apiMessage(m)
	}
	return out, position(a), err
}

func apiMessage(m queuefsm.Message) httpapi.Message {
	out := httpapi.Message{ID: m.ID, ContentType: m.ContentType, Body: m.Body, Deliveries: m.Deliveries}
	if o := m.Origin; o != nil {
		out.Origin = &httpapi.Origin{Queue: o.Queue, ID: o.ID, Deliveries: o.Deliveries}
	}
	return out
}

func (s *service) Lease(ctx context.Context, queue string, ttl time.Duration) (httpapi.Lease, bool, httpapi.LogPosition, error) {
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpLease, Queue: queue, TTL: ttl.Milliseconds()})
	if err != nil {
		return httpapi.Lease{}, false, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.DequeueResult](a)
	return httpapi.Lease{Message: apiMessage(r.Message), Token: r.Token, Expires: localTime(r.Expires, r.Now)}, r.Found, position(a), err
}

func (s *service) Ack(ctx context.Context, queue string, id uint64, token string) (httpapi.LogPosition, error) {
	return s.done(ctx, queuefsm.Command{Op: queuefsm.OpAck, Queue: queue, ID: id, Token: token})
}

func (s *service) Release(ctx context.Context, queue string, id uint64, token string, delay time.Duration) (httpapi.LogPosition, error) {
	return s.done(ctx, queuefsm.Command{Op: queuefsm.OpRelease, Queue: queue, ID: id, Token: token, Delay: delay.Milliseconds()})
}

// admit is the cheap check before an enqueue or batch is proposed: a
// write the state machine would refuse now is refused without costing a
// log entry. A replay of a remembered key is never refused (it answers
// 200). A refusal is confirmed on state as fresh as a read barrier's, so
// a lagging node never refuses what the cluster would take; Apply decides
// again in any case.
func (s *service) admit(ctx context.Context, queue, key string, n int, bytes int64) error {
	if err := checkName(queue); err != nil {
		return err
	}
	check := func() (err error) {
		s.node.View(func() {
			if key == "" || !s.fsm.Remembers(queue, key) {
				err = s.fsm.Admit(queue, n, bytes)
			}
		})
		return err
	}
	if check() == nil {
		return nil
	}
	// This node may lag (a delete or a drain applied elsewhere): refuse
	// only on state as fresh as a read barrier makes it, which costs no
	// log entry.
	if err := s.node.ReadBarrier(ctx); err != nil {
		return nil // let the state machine decide
	}
	if err := check(); err != nil {
		return apiErr(err)
	}
	return nil
}

// Configure sets the fields ch names and answers the queue's whole config
// as this node holds it after the change.
func (s *service) Configure(ctx context.Context, queue string, ch httpapi.ConfigChange) (httpapi.QueueConfig, httpapi.LogPosition, error) {
	c := queuefsm.Command{Op: queuefsm.OpConfigure, Queue: queue}
	var set httpapi.QueueConfig // what ch sets, should the queue be gone at once
	if ch.MaxDeliveries != nil {
		c.Fields, c.MaxDeliveries, set.MaxDeliveries = c.Fields|queuefsm.FieldMaxDeliveries, *ch.MaxDeliveries, *ch.MaxDeliveries
	}
	if ch.DeadLetterQueue != nil {
		c.Fields, c.DeadLetterQueue, set.DeadLetterQueue = c.Fields|queuefsm.FieldDeadLetterQueue, *ch.DeadLetterQueue, *ch.DeadLetterQueue
	}
	if ch.MaxMessages != nil {
		c.Fields, c.MaxMessages, set.MaxMessages = c.Fields|queuefsm.FieldMaxMessages, *ch.MaxMessages, *ch.MaxMessages
	}
	if ch.MaxBytes != nil {
		c.Fields, c.MaxBytes, set.MaxBytes = c.Fields|queuefsm.FieldMaxBytes, *ch.MaxBytes, *ch.MaxBytes
	}
	if c.Fields == 0 { // 0 would set every field
		return httpapi.QueueConfig{}, httpapi.LogPosition{}, fmt.Errorf("%w: the change sets nothing", httpapi.ErrInvalid)
	}
	pos, err := s.done(ctx, c)
	if err != nil {
		return httpapi.QueueConfig{}, pos, err
	}
	s.node.View(func() {
		if st, err := s.fsm.Stats(queue); err == nil {
			set = apiConfig(st.Config)
		}
	})
	return set, pos, nil
}

func apiConfig(c queuefsm.QueueConfig) httpapi.QueueConfig {
	return httpapi.QueueConfig{MaxDeliveries: c.MaxDeliveries, DeadLetterQueue: c.DeadLetterQueue, MaxMessages: c.MaxMessages, MaxBytes: c.MaxBytes}
}

func (s *service) DeleteQueue(ctx context.Context, queue string) (httpapi.LogPosition, error) {
	return s.done(ctx, queuefsm.Command{Op: queuefsm.OpDeleteQueue, Queue: queue})
}

func (s *service) Purge(ctx context.Context, queue string) (int, httpapi.LogPosition, error) {
	a, err := s.propose(ctx, queuefsm.Command{Op: queuefsm.OpPurge, Queue: queue})
	if err != nil {
		return 0, httpapi.LogPosition{}, err
	}
	r, err := result[queuefsm.PurgeResult](a)
	return r.Dropped, position(a), err
}

// read runs fn under the node's read lock after a read barrier, so that
// what it reads is linearizable; fn's error is mapped as Apply's are.
func (s *service) read(ctx context.Context, queue string, fn func() error) error {
	if queue != "" {
		if err := checkName(queue); err != nil {
			return err
		}
	}
	if err := s.node.ReadBarrier(ctx); err != nil {
		return unavailable(err)
	}
	var err error
	s.node.View(func() { err = fn() })
	if err != nil {
		return apiErr(err)
	}
	return nil
}

func (s *service) Peek(ctx context.Context, queue string, max int) ([]httpapi.PeekedMessage, error) {
	var ms []queuefsm.PeekedMessage
	var now int64
	err := s.read(ctx, queue, func() (err error) {
		ms, err = s.fsm.Peek(queue, max)
		now = s.fsm.estimatedNow()
		return err
	})
	out := make([]httpapi.PeekedMessage, len(ms))
	for i, m := range ms {
		out[i] = httpapi.PeekedMessage{Message: apiMessage(m.Message), Enqueued: localTime(m.Enqueued, now)}
	}
	return out, err
}

func (s *service) Stats(ctx context.Context, queue string) (httpapi.QueueStats, error) {
	var st queuefsm.QueueStats
	if err := s.read(ctx, queue, func() (err error) {
		st, err = s.fsm.Stats(queue)
		st.Now = s.fsm.estimatedNow() // the clock stands still between entries
		return err
	}); err != nil {
		return httpapi.QueueStats{}, err
	}
	out := httpapi.QueueStats{Queue: queue, Depth: st.Depth, Leased: st.Leased, Delayed: st.Delayed, Bytes: st.Bytes, Keys: st.Keys,
		Config: apiConfig(st.Config), Totals: httpapi.QueueTotals(st.Totals)}
	if st.OldestReady != 0 {
		out.OldestReadyAgeMS = max(st.Now-st.OldestReady, 0)
	}
	return out, nil
}

func (s *service) Limits(ctx context.Context) (httpapi.ClusterLimits, error) {
	var l queuefsm.ClusterLimits
	err := s.read(ctx, "", func() error { l = s.fsm.Limits(); return nil })
	return apiLimits(l), err
}

// SetLimits sets the limits ch names and answers them as this node holds
// them after the change.
func (s *service) SetLimits(ctx context.Context, ch httpapi.LimitsChange) (httpapi.ClusterLimits, httpapi.LogPosition, error) {
	c := queuefsm.Command{Op: queuefsm.OpSetLimits}
	if ch.MaxQueues != nil {
		c.Fields, c.MaxQueues = c.Fields|queuefsm.FieldMaxQueues, *ch.MaxQueues
	}
	if ch.MaxBytes != nil {
		c.Fields, c.MaxBytes = c.Fields|queuefsm.FieldMaxBytes, *ch.MaxBytes
	}
	if c.Fields == 0 { // 0 would set both
		return httpapi.ClusterLimits{}, httpapi.LogPosition{}, fmt.Errorf("%w: the change sets nothing", httpapi.ErrInvalid)
	}
	pos, err := s.done(ctx, c)
	if err != nil {
		return httpapi.ClusterLimits{}, pos, err
	}
	var l queuefsm.ClusterLimits
	s.node.View(func() { l = s.fsm.Limits() })
	return apiLimits(l), pos, nil
}

func apiLimits(l queuefsm.ClusterLimits) httpapi.ClusterLimits {
	return httpapi.ClusterLimits{MaxQueues: l.MaxQueues, MaxBytes: l.MaxBytes, Queues: l.Queues, Bytes: l.Bytes, Alarms: l.Alarms}
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
			s.propose(pctx, queuefsm.Command{Op: queuefsm.OpTick})
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

func (s *service) Nodes(ctx context.Context) (httpapi.Nodes, error) {
	if err := s.node.ReadBarrier(ctx); err != nil {
		return httpapi.Nodes{}, unavailable(err)
	}
	st := s.node.Status()
	return nodesOf(st.Members, st.Leader), nil
}

func nodesOf(members []raftnode.Member, leader uint64) httpapi.Nodes {
	out := httpapi.Nodes{Leader: leader, Nodes: []httpapi.Node{}}
	for _, m := range members {
		out.Nodes = append(out.Nodes, apiNode(m, leader))
	}
	return out
}

func apiNode(m raftnode.Member, leader uint64) httpapi.Node {
	return httpapi.Node{ID: m.ID, PeerURLs: m.PeerURLs, APIURL: m.APIURL, Learner: m.Learner, IsLeader: m.ID == leader}
}

func (s *service) AddNode(ctx context.Context, spec httpapi.NodeSpec) (httpapi.Node, error) {
	m, err := s.node.AddMember(ctx, spec.ID, spec.PeerURL, spec.Learner)
	if err != nil {
		return httpapi.Node{}, memberErr(err)
	}
	return apiNode(m, s.node.Status().Leader), nil
}

func (s *service) RemoveNode(ctx context.Context, id uint64) (httpapi.Nodes, error) {
	members, err := s.node.RemoveMember(ctx, id)
	if err != nil {
		return httpapi.Nodes{}, memberErr(err)
	}
	// The membership as the removal left it, without a read barrier: a
	// node that removed itself has stopped and could not pass one.
	return nodesOf(members, s.node.Status().Leader), nil
}

func (s *service) PromoteNode(ctx context.Context, id uint64) (httpapi.Node, error) {
	m, err := s.node.PromoteMember(ctx, id)
	var nl *raftnode.NotLeaderError
	if errors.As(err, &nl) {
		for _, m := range s.node.Status().Members {
			if m.ID == nl.Leader && m.APIURL != "" {
				return httpapi.Node{}, &httpapi.LeaderElsewhereError{URL: m.APIURL}
			}
		}
		return httpapi.Node{}, fmt.Errorf("%w: %w: %w (its API URL is not known yet)", httpapi.ErrUnavailable, httpapi.ErrNotApplied, err)
	}
	if err != nil {
		return httpapi.Node{}, memberErr(err)
	}
	return apiNode(m, s.node.Status().Leader), nil
}

func (s *service) TransferLeader(ctx context.Context, id uint64) (httpapi.Nodes, error) {
	if err := s.node.TransferLeadership(ctx, id); err != nil {
		if errors.Is(err, raftnode.ErrTransferTimeout) {
			return httpapi.Nodes{}, fmt.Errorf("%w: %w", httpapi.ErrGatewayTimeout, err)
		}
		return httpapi.Nodes{}, memberErr(err)
	}
	return s.Nodes(ctx)
}

// memberErr maps raftnode's membership errors to API statuses.
func memberErr(err error) error {
	switch {
	case errors.Is(err, raftnode.ErrUnknownMember):
		return fmt.Errorf("%w: %w", httpapi.ErrNotFound, err)
	case errors.Is(err, raftnode.ErrIDUsed), errors.Is(err, raftnode.ErrPeerURLInUse),
		errors.Is(err, raftnode.ErrNotLearner), errors.Is(err, raftnode.ErrIsLearner),
		errors.Is(err, raftnode.ErrLearnerBehind), errors.Is(err, raftnode.ErrLastVoter):
		return fmt.Errorf("%w: %w", httpapi.ErrConflict, err)
	case errors.Is(err, raftnode.ErrWouldLoseQuorum), errors.Is(err, raftnode.ErrReadTimeout), errors.Is(err, raftnode.ErrUnreachable),
		errors.Is(err, raftnode.ErrTransferTimeout): // a removal that could not move leadership off its member
		// Refused before anything was proposed.
		return fmt.Errorf("%w: %w: %w", httpapi.ErrUnavailable, httpapi.ErrNotApplied, err)
	case errors.Is(err, raftnode.ErrNoLeader), errors.Is(err, raftnode.ErrTimeout), errors.Is(err, raftnode.ErrLeaderChanged),
		errors.Is(err, raftnode.ErrStopped):
		return unavailable(err)
	default:
		return fmt.Errorf("%w: %w", httpapi.ErrInvalid, err)
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
