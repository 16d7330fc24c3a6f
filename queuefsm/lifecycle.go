package queuefsm

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"slices"
)

// ErrNoQueue: the queue does not exist (never made, or deleted).
var ErrNoQueue = errors.New("queuefsm: no such queue")

// PurgeResult is Apply's result for a purge: how many ready and delayed
// messages were dropped.
type PurgeResult struct {
	Dropped int
}

// QueueConfig is a queue's configuration; 0 and "" mean none.
type QueueConfig struct {
	MaxDeliveries   uint64
	DeadLetterQueue string
	MaxMessages     int64
	MaxBytes        int64
	QueueSettings
	// Created and Modified are when the queue was made and last
	// configured (cluster time, ms; as the snapshot's clock for a queue
	// restored from a snapshot older than version 5). Not settable.
	Created, Modified int64
}

const (
	// configFields is what a configure of Fields 0 sets: the four fields
	// of version 4.
	configFields   = FieldMaxDeliveries | FieldDeadLetterQueue | FieldMaxMessages | FieldMaxBytes
	settingsFields = FieldVisibility | FieldDelay | FieldReceiveWait | FieldMaxMessageSize | FieldRetention | FieldContentDedup
)

// configure sets the fields the command names (0: all four), making the
// queue if need be and, from version 4 on, the dead-letter queue it names
// (so that it can be read at once, and so that both count against
// max_queues when made; dead-lettering makes it again only if it was
// deleted since). It works at any limit on a queue that exists, unless it
// names a dead-letter queue that would have to be made past max_queues.
func (f *FSM) configure(c call) any {
	all := configFields
	if c.version >= commandVersion {
		all |= settingsFields
	}
	set, err := c.fields(all)
	if err != nil {
		return err
	}
	if c.Fields == 0 {
		set = configFields // in version 5 too
	}
	if err := c.checkConfig(set); err != nil {
		return err
	}
	if c.limited() {
		if err := f.roomFor(f.missing(c.Queue, c.dlqToMake(set))); err != nil {
			return err
		}
		if d := c.dlqToMake(set); d != "" {
			f.queue(d)
		}
	}
	q := f.queue(c.Queue)
	q.setConfig(c.Command, set)
	q.modified = f.now
	return Done{}
}

// checkConfig validates the fields a configure sets.
func (c *call) checkConfig(set Fields) error {
	if d := c.DeadLetterQueue; set&FieldDeadLetterQueue != 0 && d != "" {
		if err := c.validName(d); err != nil {
			return err
		}
		if d == c.Queue {
			return fmt.Errorf("%w: a queue cannot be its own dead-letter queue", ErrInvalidArg)
		}
	}
	if set&FieldMaxMessages != 0 && c.MaxMessages < 0 || set&FieldMaxBytes != 0 && c.MaxBytes < 0 {
		return fmt.Errorf("%w: negative limit", ErrInvalidArg)
	}
	return c.Config.check()
}

// dlqToMake is the dead-letter queue a configure names, if it sets one.
func (c *call) dlqToMake(set Fields) string {
	if set&FieldDeadLetterQueue == 0 {
		return ""
	}
	return c.DeadLetterQueue
}

// missing counts the names ("" skipped) that name no queue.
func (f *FSM) missing(names ...string) int {
	n := 0
	for _, name := range names {
		if name != "" && f.queues[name] == nil {
			n++
		}
	}
	return n
}

func (q *queue) setConfig(c Command, set Fields) {
	if set&FieldMaxDeliveries != 0 {
		q.maxDeliveries = c.MaxDeliveries
	}
	if set&FieldDeadLetterQueue != 0 {
		q.dlq = c.DeadLetterQueue
	}
	if set&FieldMaxMessages != 0 {
		q.maxMessages = c.MaxMessages
	}
	if set&FieldMaxBytes != 0 {
		q.maxBytes = c.MaxBytes
	}
	q.settings.set(c.Config, set)
}

func (q *queue) config() QueueConfig {
	return QueueConfig{MaxDeliveries: q.maxDeliveries, DeadLetterQueue: q.dlq, MaxMessages: q.maxMessages, MaxBytes: q.maxBytes,
		QueueSettings: q.settings, Created: q.created, Modified: q.modified}
}

// deleteQueue removes a queue with its messages, leases, keys, config and
// totals, in O(1): a capture may still hold its records, which never
// change. A queue that names it as dead-letter queue keeps naming it; the
// next dead letter makes it again. Its ids raise idFloor, so that no queue
// made from now on repeats them.
func (f *FSM) deleteQueue(c call) any {
	q := c.q
	if q == nil {
		return fmt.Errorf("%w: %s", ErrNoQueue, c.Queue)
	}
	f.bytes -= q.bytes()
	f.idFloor = max(f.idFloor, q.lastID)
	delete(f.queues, q.name)
	return Done{}
}

// purge drops every ready and delayed message. Leased messages stay: their
// consumers can still ack, release or extend them, and a released or
// expired one comes back. Idempotency keys stay too, so a retry of a
// purged message is still a replay. It costs what the leased and delayed
// messages number, not the ready ones: the leased are found through the
// timers and filed in a table of their own.
func (f *FSM) purge(c call) any {
	q := c.q
	if q == nil {
		return fmt.Errorf("%w: %s", ErrNoQueue, c.Queue)
	}
	kept := q.leasedMsgs()
	dropped := q.msgs.len() - len(kept)
	q.msgs, q.ready, q.timers, q.delayedN = msgTable{}, nil, nil, 0
	q.avail, q.groupedReady, q.groups = nil, 0, nil // only leases hold groups now
	var bytes int64
	for _, m := range kept {
		q.leaseStarted(m)
		q.msgs.add(m)
		q.timers = append(q.timers, timer{at: m.at, id: m.id})
		bytes += m.cost()
	}
	heap.Init(&q.timers)
	f.charge(q, bytes-q.msgBytes, 0)
	q.totals.Purged += uint64(dropped)
	return PurgeResult{Dropped: dropped}
}

// leasedMsgs returns the leased messages, by id: every one has a timer at
// its expiry (perhaps twice, after an extend to the same time).
func (q *queue) leasedMsgs() []*msg {
	var out []*msg
	for _, t := range q.timers {
		if m := q.msgs.get(t.id); m != nil && m.state == stateLeased && m.at == t.at {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *msg) int { return cmp.Compare(a.id, b.id) })
	return slices.Compact(out)
}

// expiresAt is when m leaves a queue whose retention is r: r after it was
// stored, rounded up to the second the record keeps (late, never early).
func (m *msg) expiresAt(r int64) int64 { return (int64(m.enqueued)+1)*1000 + r }

// dropExpired drops the messages stored longer than the queue's retention,
// in whatever state: ids grow with the time they were stored, so they are
// the oldest ids, and the walk stops at the first message kept.
func (q *queue) dropExpired(f *FSM) {
	r := q.settings.Retention
	if r <= 0 {
		return
	}
	for m := q.msgs.first(); m != nil && m.expiresAt(r) <= f.now; m = q.msgs.first() {
		switch m.state {
		case stateDelayed:
			q.delayedN--
			q.leaseEnded(m)
		case stateReady:
			q.unfileOldest(m)
		}
		q.drop(f, m) // a lease ends in drop
		q.totals.Expired++
	}
}
