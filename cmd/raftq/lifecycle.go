package main

import (
	"context"
	"fmt"
	"time"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/queuefsm"
)

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
	settings(&c, ch)
	set = apiConfig(queuefsm.QueueConfig{MaxDeliveries: c.MaxDeliveries, DeadLetterQueue: c.DeadLetterQueue,
		MaxMessages: c.MaxMessages, MaxBytes: c.MaxBytes, QueueSettings: c.Config})
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

// settings puts the queue settings ch names into c.
func settings(c *queuefsm.Command, ch httpapi.ConfigChange) {
	for _, f := range []struct {
		field queuefsm.Fields
		from  *int64
		to    *int64
	}{
		{queuefsm.FieldVisibility, ch.VisibilityTimeoutMS, &c.Config.Visibility},
		{queuefsm.FieldDelay, ch.DelayMS, &c.Config.Delay},
		{queuefsm.FieldReceiveWait, ch.ReceiveWaitMS, &c.Config.ReceiveWait},
		{queuefsm.FieldMaxMessageSize, ch.MaxMessageSize, &c.Config.MaxMessageSize},
		{queuefsm.FieldRetention, ch.RetentionMS, &c.Config.Retention},
	} {
		if f.from != nil {
			c.Fields, *f.to = c.Fields|f.field, *f.from
		}
	}
	if ch.ContentDedup != nil {
		c.Fields, c.Config.ContentDedup = c.Fields|queuefsm.FieldContentDedup, *ch.ContentDedup
	}
}

func apiConfig(c queuefsm.QueueConfig) httpapi.QueueConfig {
	s := c.QueueSettings
	return httpapi.QueueConfig{MaxDeliveries: c.MaxDeliveries, DeadLetterQueue: c.DeadLetterQueue, MaxMessages: c.MaxMessages, MaxBytes: c.MaxBytes,
		VisibilityTimeoutMS: s.Visibility, DelayMS: s.Delay, ReceiveWaitMS: s.ReceiveWait, MaxMessageSize: s.MaxMessageSize,
		RetentionMS: s.Retention, ContentDedup: s.ContentDedup}
}

// Defaults is the queue's config as this node holds it (no read barrier).
func (s *service) Defaults(queue string) httpapi.QueueConfig {
	var c queuefsm.QueueConfig
	s.node.View(func() { c = s.fsm.Config(queue) })
	return apiConfig(c)
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

func (s *service) Peek(ctx context.Context, queue string, max int) ([]httpapi.Message, error) {
	var ms []queuefsm.Message
	var now int64
	err := s.read(ctx, queue, func() (err error) {
		ms, err = s.fsm.Peek(queue, max)
		now = s.fsm.estimatedNow()
		return err
	})
	out := make([]httpapi.Message, len(ms))
	for i, m := range ms {
		out[i] = apiMessage(m, now)
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
	return apiStats(queue, st), nil
}

// AllStats describes up to limit queues by name after after, after one
// read barrier; the node's view lock is held for those queues only.
func (s *service) AllStats(ctx context.Context, after string, limit int) ([]httpapi.QueueStats, bool, error) {
	var out []httpapi.QueueStats
	more := false
	err := s.read(ctx, "", func() error {
		now := s.fsm.estimatedNow()
		for _, q := range s.fsm.Queues() {
			if q.Name <= after {
				continue
			}
			if len(out) == limit {
				more = true
				break
			}
			st, err := s.fsm.Stats(q.Name)
			if err != nil {
				continue // a name only an old log allowed ("." or ".."): not readable
			}
			st.Now = now
			out = append(out, apiStats(q.Name, st))
		}
		return nil
	})
	return out, more, err
}

func apiStats(queue string, st queuefsm.QueueStats) httpapi.QueueStats {
	out := httpapi.QueueStats{Queue: queue, Depth: st.Depth, Leased: st.Leased, Delayed: st.Delayed, Bytes: st.Bytes, Keys: st.Keys,
		Config: apiConfig(st.Config), Totals: httpapi.QueueTotals(st.Totals),
		CreatedAt: localTime(st.Config.Created, st.Now).Truncate(time.Second).UTC(), ModifiedAt: localTime(st.Config.Modified, st.Now).Truncate(time.Second).UTC()}
	if st.OldestReady != 0 {
		out.OldestReadyAgeMS = max(st.Now-st.OldestReady, 0)
	}
	return out
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

// ClearAlarm clears node's disk alarm, as the operator asks, and answers
// the limits as this node holds them after.
func (s *service) ClearAlarm(ctx context.Context, node uint64) (httpapi.ClusterLimits, httpapi.LogPosition, error) {
	if node > queuefsm.MaxProposer {
		return httpapi.ClusterLimits{}, httpapi.LogPosition{}, fmt.Errorf("%w: node ids go up to %d", httpapi.ErrInvalid, queuefsm.MaxProposer)
	}
	pos, err := s.done(ctx, queuefsm.Command{Op: queuefsm.OpAlarm, Node: node, Raise: false})
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
