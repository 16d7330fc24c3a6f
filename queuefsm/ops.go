package queuefsm

import (
	"container/heap"
	"crypto/sha256"
	"fmt"
	"math"
)

// opSpec is how Apply runs one op after the shared step.
type opSpec struct {
	// cluster: the op names no queue (its Queue is ignored), so the shared
	// step checks no name and expires no queue.
	cluster bool
	apply   func(f *FSM, c call) any
}

// ops is every op's handler. Each decides alone, from the command and the
// state, and returns Apply's result; the replica-wide decisions (limits
// included) all sit here, in the handlers of the ops they bind.
var ops = [...]opSpec{
	OpEnqueue:     {apply: (*FSM).enqueue},
	OpDequeue:     {apply: (*FSM).dequeue},
	OpLease:       {apply: (*FSM).lease},
	OpAck:         {apply: (*FSM).ack},
	OpRelease:     {apply: (*FSM).release},
	OpExtend:      {apply: (*FSM).extend},
	OpConfigure:   {apply: (*FSM).configure},
	OpTick:        {cluster: true, apply: (*FSM).tick},
	OpBatch:       {apply: (*FSM).batch},
	OpPopMany:     {apply: (*FSM).popMany},
	OpDeleteQueue: {apply: (*FSM).deleteQueue},
	OpPurge:       {apply: (*FSM).purge},
	OpSetLimits:   {cluster: true, apply: (*FSM).setLimits},
	OpAlarm:       {cluster: true, apply: (*FSM).alarm},
}

// enqueue appends one message. A remembered key answers the original id
// before any limit is looked at: a replay stores nothing.
func (f *FSM) enqueue(c call) any {
	if !c.limited() {
		c.q = f.queue(c.Queue) // versions 1 to 3 made the queue before checking the key
	}
	sum, err := c.keySum()
	if err != nil {
		return err
	}
	if seen, ok := c.q.seen(c.IdempotencyKey); ok {
		if seen.sum != sum {
			return fmt.Errorf("%w: key %q", ErrKeyReused, c.IdempotencyKey)
		}
		return EnqueueResult{ID: seen.id, Replay: true}
	}
	if err := f.admitCall(&c, 1, MessageCost(c.ContentType, len(c.Body))+KeyCost(c.IdempotencyKey)); err != nil {
		return err
	}
	q := f.queue(c.Queue)
	m := q.store(f, c.ContentType, string(c.Body), f.now+c.Delay)
	if c.IdempotencyKey != "" {
		q.remember(f, c.IdempotencyKey, m.id, sum)
	}
	return EnqueueResult{ID: m.id}
}

// keySum checks the idempotency key and sums what it stands for.
func (c *call) keySum() (sum [32]byte, err error) {
	if c.IdempotencyKey == "" {
		return sum, nil
	}
	if err := ValidateIdempotencyKey(c.IdempotencyKey); err != nil {
		return sum, err
	}
	return sha256.Sum256(append([]byte(c.ContentType+"\x00"), c.Body...)), nil
}

// batch appends every item, or none: a batch that would pass a limit is
// refused whole.
func (f *FSM) batch(c call) any {
	if len(c.Items) == 0 {
		return fmt.Errorf("%w: empty batch", ErrInvalidArg)
	}
	var cost int64
	for _, it := range c.Items {
		cost += MessageCost(it.ContentType, len(it.Body))
	}
	if err := f.admitCall(&c, len(c.Items), cost); err != nil {
		return err
	}
	q := f.queue(c.Queue)
	ids := make([]uint64, len(c.Items))
	for i, it := range c.Items {
		ids[i] = q.store(f, it.ContentType, it.Body, 0).id
	}
	return BatchResult{IDs: ids}
}

// dequeue pops the head for good.
func (f *FSM) dequeue(c call) any {
	m := c.q.take(f)
	if m == nil {
		return DequeueResult{Now: f.now}
	}
	return DequeueResult{Message: m.public(), Found: true, Now: f.now}
}

// popMany pops up to Max messages. An unknown queue answers none before
// Max is checked, as it always has.
func (f *FSM) popMany(c call) any {
	if c.q == nil {
		return PopManyResult{}
	}
	if c.Max == 0 || c.Max > MaxBatch {
		return fmt.Errorf("%w: max must be 1 to %d", ErrInvalidArg, MaxBatch)
	}
	var out []Message
	for uint64(len(out)) < c.Max {
		m := c.q.take(f)
		if m == nil {
			break
		}
		out = append(out, m.public())
	}
	return PopManyResult{Messages: out}
}

// take pops the next ready message for good (nil when none, or when the
// queue does not exist).
func (q *queue) take(f *FSM) *msg {
	if q == nil {
		return nil
	}
	m := q.nextReady(f)
	if m != nil {
		q.drop(f, m)
		q.totals.Popped++
	}
	return m
}

// lease hands the head out for TTL; it stays stored until acked.
func (f *FSM) lease(c call) any {
	if c.q == nil {
		return DequeueResult{Now: f.now}
	}
	q := c.q
	m := q.nextReady(f)
	if m == nil {
		return DequeueResult{Now: f.now}
	}
	m = q.own(f, m)
	if m.deliveries < math.MaxUint32 {
		m.deliveries++
	}
	m.state, m.at, m.lease = stateLeased, f.now+c.TTL, c.seq
	q.leasedN++
	heap.Push(&q.timers, timer{at: m.at, id: m.id})
	return DequeueResult{Message: m.public(), Found: true, Token: m.token(), Expires: m.at, Now: f.now}
}

// leased returns the message the command's token holds.
func (c *call) leased() (*msg, error) {
	if c.q == nil {
		return nil, fmt.Errorf("%w: %d in %s", ErrNoMessage, c.ID, c.Queue)
	}
	return c.q.leased(c.ID, c.Token)
}

// ack removes a leased message for good.
func (f *FSM) ack(c call) any {
	m, err := c.leased()
	if err != nil {
		return err
	}
	c.q.drop(f, m)
	c.q.totals.Acked++
	return Done{}
}

// release gives a leased message back, ready after Delay.
func (f *FSM) release(c call) any {
	m, err := c.leased()
	if err != nil {
		return err
	}
	c.q.leasedN--
	c.q.makeReady(c.q.own(f, m), f.now+c.Delay, f.now)
	return Done{}
}

// extend moves a lease's expiry to now + TTL.
func (f *FSM) extend(c call) any {
	m, err := c.leased()
	if err != nil {
		return err
	}
	m = c.q.own(f, m)
	m.at = f.now + c.TTL
	heap.Push(&c.q.timers, timer{at: m.at, id: m.id})
	return LeaseResult{Expires: m.at, Now: f.now}
}

// tick only lets time act: in every queue, leases and delays end and keys
// past the window are forgotten.
func (f *FSM) tick(call) any {
	for _, name := range f.names() {
		f.expire(f.queues[name])
	}
	return Done{}
}
