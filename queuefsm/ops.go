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
	OpLeaseMany:   {apply: (*FSM).leaseMany},
}

// enqueue appends one message. A remembered key answers the original id
// before any limit is looked at: a replay stores nothing.
func (f *FSM) enqueue(c call) any {
	if !c.limited() {
		c.q = f.queue(c.Queue) // versions 1 to 3 made the queue before checking the key
	}
	it := BatchItem{ContentType: c.ContentType, Body: string(c.Body), IdempotencyKey: c.IdempotencyKey,
		Delay: c.Delay, Flags: c.Flags, Group: c.Group, Attributes: c.Attributes}
	sum, err := it.check(c.q)
	if err != nil {
		return err
	}
	if id, ok, err := it.replay(c.q, sum); ok || err != nil {
		return EnqueueResult{ID: id, Replay: true}.or(err)
	}
	if err := f.admitCall(&c, 1, it.cost()); err != nil {
		return err
	}
	q := f.queue(c.Queue)
	q.storeKeyed(f, &it, sum)
	return EnqueueResult{ID: q.lastID}
}

func (r EnqueueResult) or(err error) any {
	if err != nil {
		return err
	}
	return r
}

// check validates a message to be stored in q (nil: not made yet) and
// sums what its idempotency key stands for.
func (it *BatchItem) check(q *queue) (sum [32]byte, err error) {
	if err := checkExtras(it.Flags, it.Group, it.Attributes); err != nil {
		return sum, err
	}
	if it.Delay < 0 {
		return sum, fmt.Errorf("%w: negative duration", ErrInvalidArg)
	}
	if q != nil && q.settings.MaxMessageSize > 0 {
		if n := MessageSize(len(it.Body), it.Attributes); n > q.settings.MaxMessageSize {
			return sum, fmt.Errorf("%w: message of %d bytes, the queue's maximum is %d", ErrTooLarge, n, q.settings.MaxMessageSize)
		}
	}
	if it.IdempotencyKey == "" {
		return sum, nil
	}
	if err := ValidateIdempotencyKey(it.IdempotencyKey); err != nil {
		return sum, err
	}
	return it.sum(), nil
}

// sum is what an idempotency key stands for: the content type and body
// (as before version 5), then the group and attributes when it has them.
func (it *BatchItem) sum() [32]byte {
	h := sha256.New()
	h.Write([]byte(it.ContentType + "\x00"))
	h.Write([]byte(it.Body))
	if it.Group != "" || len(it.Attributes) > 0 {
		b := appendExtras(nil, 0, it.Group, it.Attributes)
		h.Write(b)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// replay answers an item whose key q remembers: the original's id, or
// ErrKeyReused for another message (unless FlagDedupe).
func (it *BatchItem) replay(q *queue, sum [32]byte) (uint64, bool, error) {
	seen, ok := q.seen(it.IdempotencyKey)
	if !ok {
		return 0, false, nil
	}
	if seen.sum != sum && it.Flags&FlagDedupe == 0 {
		return 0, false, fmt.Errorf("%w: key %q", ErrKeyReused, it.IdempotencyKey)
	}
	return seen.id, true, nil
}

func (it *BatchItem) cost() int64 {
	return Cost(it.ContentType, len(it.Body), it.Group, it.Attributes) + KeyCost(it.IdempotencyKey)
}

// storeKeyed stores it and remembers its key.
func (q *queue) storeKeyed(f *FSM, it *BatchItem, sum [32]byte) *msg {
	m := q.storeItem(f, it, f.now+it.Delay)
	if it.IdempotencyKey != "" {
		q.remember(f, it.IdempotencyKey, m.id, sum)
	}
	return m
}

// batch appends every item, or none: a batch that would pass a limit is
// refused whole.
//
// An item whose idempotency key is remembered, or was used by an earlier
// item of the batch, stores nothing and answers the original's id (with
// Replay set); another message under such a key refuses the whole batch
// (ErrKeyReused), unless the item has FlagDedupe.
func (f *FSM) batch(c call) any {
	if len(c.Items) == 0 {
		return fmt.Errorf("%w: empty batch", ErrInvalidArg)
	}
	var sums [][32]byte // what each item's key stands for (made at the first key)
	sumOf := func(i int) [32]byte {
		if sums == nil {
			return [32]byte{}
		}
		return sums[i]
	}
	res := BatchResult{IDs: make([]uint64, len(c.Items))}
	var cost int64
	stored := 0
	var firstOf map[string]int // keys of this batch: the first item with each (made at the first key)
	for i := range c.Items {
		it := &c.Items[i]
		sum, err := it.check(c.q)
		if err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		if it.IdempotencyKey != "" {
			if sums == nil {
				sums = make([][32]byte, len(c.Items))
			}
			sums[i] = sum
		}
		id, replay, err := it.replay(c.q, sum)
		if err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		if j, ok := firstOf[it.IdempotencyKey]; ok && it.IdempotencyKey != "" && !replay {
			if sums[j] != sum && it.Flags&FlagDedupe == 0 {
				return fmt.Errorf("item %d: %w: key %q", i, ErrKeyReused, it.IdempotencyKey)
			}
			replay = true
		}
		if replay {
			res.replay(i, id)
			continue
		}
		if it.IdempotencyKey != "" {
			if firstOf == nil {
				firstOf = map[string]int{}
			}
			firstOf[it.IdempotencyKey] = i
		}
		cost += it.cost()
		stored++
	}
	if stored == 0 {
		return res // replays only: stores nothing, as a replayed enqueue
	}
	if err := f.admitCall(&c, stored, cost); err != nil {
		return err
	}
	q := f.queue(c.Queue)
	for i := range c.Items {
		it := &c.Items[i]
		switch {
		case res.Replay != nil && res.Replay[i] && res.IDs[i] == 0: // an earlier item's key
			res.IDs[i] = res.IDs[firstOf[it.IdempotencyKey]]
		case res.Replay == nil || !res.Replay[i]:
			res.IDs[i] = q.storeKeyed(f, it, sumOf(i)).id
		}
	}
	return res
}

func (r *BatchResult) replay(i int, id uint64) {
	if r.Replay == nil {
		r.Replay = make([]bool, len(r.IDs))
	}
	r.Replay[i], r.IDs[i] = true, id
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
	if n := min(c.Max, uint64(c.q.takable())); n > 0 {
		out = make([]Message, 0, n) // one allocation for the usual case
	}
	for uint64(len(out)) < c.Max {
		m := c.q.take(f)
		if m == nil {
			break
		}
		out = append(out, m.public())
	}
	return PopManyResult{Messages: out, Now: f.now}
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
	return q.leaseFor(f, m, c)
}

// leaseMany leases up to Max messages for TTL, in the order single leases
// would take them, except that a message of a group is followed by the
// next ones of its group (SQS FIFO's receive: the lease holds the group,
// and this command holds it for them all). An unknown queue answers none
// before Max is checked, as a pop many.
func (f *FSM) leaseMany(c call) any {
	if c.q == nil {
		return LeaseManyResult{Now: f.now}
	}
	if c.Max == 0 || c.Max > MaxBatch {
		return fmt.Errorf("%w: max must be 1 to %d", ErrInvalidArg, MaxBatch)
	}
	q := c.q
	var out []DequeueResult
	for uint64(len(out)) < c.Max {
		m := q.nextReady(f)
		if m == nil {
			break
		}
		out = append(out, q.leaseFor(f, m, c))
		if g := q.groups[m.group()]; g != nil {
			for uint64(len(out)) < c.Max {
				if m = q.nextInGroup(f, g); m == nil {
					break
				}
				out = append(out, q.leaseFor(f, m, c))
			}
		}
	}
	return LeaseManyResult{Leases: out, Now: f.now}
}

// leaseFor leases m, taken off its line, for the command's TTL.
func (q *queue) leaseFor(f *FSM, m *msg, c call) DequeueResult {
	m = q.own(f, m)
	if m.deliveries < math.MaxUint32 {
		m.deliveries++
	}
	m.state, m.at, m.lease = stateLeased, f.now+c.TTL, c.seq
	q.leasedN++
	q.leaseStarted(m)
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
	c.q.leaseEnded(m)
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
