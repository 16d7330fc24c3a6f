package queuefsm

import (
	"cmp"
	"fmt"
	"slices"
)

// MaxPeek is the most messages one Peek returns.
const MaxPeek = 1000

// QueueTotals count a queue's messages since it was made (or since a
// snapshot older than version 4 was restored: Enqueued then starts at the
// messages it held). Enqueued always equals what is stored plus the five
// others.
type QueueTotals struct {
	Enqueued     uint64 // stored: enqueues, batch items, dead letters moved in (replays store nothing)
	Popped       uint64 // taken for good by a dequeue or a pop many
	Acked        uint64
	DeadLettered uint64 // moved to the dead-letter queue, or dropped when it had none
	Purged       uint64
	Expired      uint64 // dropped at the end of the queue's retention
}

// QueueStats describe one queue. Like Ready, they count leases and delays
// whose time has come as ready, acted on or not.
type QueueStats struct {
	Depth   int // ready: what takes would find now
	Leased  int
	Delayed int
	Bytes   int64 // what its messages and keys cost (MessageCost, KeyCost)
	Keys    int   // idempotency keys remembered
	// OldestReady is when the oldest ready message was stored (as
	// Message.Enqueued); 0 when none is ready. Its age is Now −
	// OldestReady.
	OldestReady int64
	Now         int64 // the state machine's clock
	Config      QueueConfig
	Totals      QueueTotals
}

// Peek returns up to max ready messages of queue, oldest first, without
// taking them or changing anything: the order takes would find them in.
// A message already delivered max_deliveries times shows too, as Ready
// counts it; the next take moves it to the dead-letter queue. Errors:
// ErrInvalidName, ErrInvalidArg (max not 1 to MaxPeek), ErrNoQueue.
//
// Its cost does not grow with the queue: it walks the table in id order
// from the oldest ready message, skipping leased and delayed ones; should
// it skip more than max+64 (ready messages scattered among many leases)
// it walks the ready heap instead, O(max·log max) whatever the rest.
func (f *FSM) Peek(queue string, max int) ([]Message, error) {
	q, err := f.known(queue)
	if err != nil {
		return nil, err
	}
	if max < 1 || max > MaxPeek {
		return nil, fmt.Errorf("%w: max must be 1 to %d", ErrInvalidArg, MaxPeek)
	}
	ms, ok := q.peekTable(f.now, max)
	if !ok {
		ms = q.peekHeap(f.now, max)
	}
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = m.public()
	}
	return out, nil
}

// readyAt reports whether a take at now would find m ready: it is, or its
// lease or delay has ended (every leased or delayed message has a timer
// at its at).
func (m *msg) readyAt(now int64) bool { return m.state == stateReady || m.at <= now }

// peekTable is Peek's walk of the table; false if it gave up.
func (q *queue) peekTable(now int64, max int) ([]*msg, bool) {
	start := q.readyMin()
	if due := q.dueMsgs(now); len(due) > 0 {
		start = min(start, due[0].id)
	}
	var out []*msg
	skipped := 0
	for m := range q.msgs.ascend(start) {
		if !m.readyAt(now) {
			if skipped++; skipped > max+64 {
				return nil, false
			}
			continue
		}
		if out = append(out, m); len(out) == max {
			break
		}
	}
	return out, true
}

// peekHeap is Peek's walk of the ready heap, merged with the leases and
// delays due.
func (q *queue) peekHeap(now int64, max int) []*msg {
	due := q.dueMsgs(now)
	var out []*msg
	for _, id := range q.readyIDs(max) {
		for len(due) > 0 && due[0].id < id && len(out) < max {
			out, due = append(out, due[0]), due[1:]
		}
		if len(out) == max {
			return out
		}
		if m := q.msgs.get(id); m != nil && m.state == stateReady {
			out = append(out, m)
		}
	}
	return append(out, due[:min(len(due), max-len(out))]...)
}

// Stats describes queue. Errors: ErrInvalidName, ErrNoQueue.
func (f *FSM) Stats(queue string) (QueueStats, error) {
	q, err := f.known(queue)
	if err != nil {
		return QueueStats{}, err
	}
	s := QueueStats{Leased: q.leasedN, Delayed: q.delayedN, Bytes: q.bytes(), Keys: len(q.keys),
		Now: f.now, Config: q.config(), Totals: q.totals}
	oldest := q.readyMin()
	for _, m := range q.dueMsgs(f.now) {
		if m.state == stateLeased {
			s.Leased--
		} else {
			s.Delayed--
		}
		oldest = min(oldest, m.id)
	}
	s.Depth = q.msgs.len() - s.Leased - s.Delayed
	if m := q.msgs.get(oldest); m != nil {
		s.OldestReady = int64(m.enqueued) * 1000
	}
	return s, nil
}

// Config is queue's configuration, in O(1) (zero for an unknown queue):
// for the defaults an API applies to each request, which need none of
// Stats' counting.
func (f *FSM) Config(queue string) QueueConfig {
	if q := f.queues[queue]; q != nil {
		return q.config()
	}
	return QueueConfig{}
}

// known returns the queue named, or why there is none.
func (f *FSM) known(name string) (*queue, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	q := f.queues[name]
	if q == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoQueue, name)
	}
	return q, nil
}

// dueMsgs returns, by id, the leased and delayed messages whose timer has
// passed at now but has not been acted on. It walks only the heap's
// entries at or before now (a heap's children are never earlier than
// their parent).
func (q *queue) dueMsgs(now int64) []*msg {
	var out []*msg
	var walk func(i int)
	walk = func(i int) {
		if i >= len(q.timers) || q.timers[i].at > now {
			return
		}
		t := q.timers[i]
		if m := q.msgs.get(t.id); m != nil && m.at == t.at && m.state != stateReady {
			out = append(out, m)
		}
		walk(2*i + 1)
		walk(2*i + 2)
	}
	walk(0)
	slices.SortFunc(out, func(a, b *msg) int { return cmp.Compare(a.id, b.id) })
	return slices.Compact(out) // a message may have several current timers (an extend to the same time)
}

// min is the smallest id in the heap (the largest id if none).
func (h idHeap) min() uint64 {
	if len(h) == 0 {
		return ^uint64(0)
	}
	return h[0]
}

// ascending yields the heap's ids in ascending order without changing the
// heap: a frontier of the heap's positions, itself a min-heap by id,
// starts at the root; each position taken adds its two children. Taking k
// ids costs O(k·log k), whatever the heap's size.
func (h idHeap) ascending(yield func(uint64) bool) {
	if len(h) == 0 {
		return
	}
	fr := []int{0}
	less := func(a, b int) bool { return h[fr[a]] < h[fr[b]] }
	for len(fr) > 0 {
		i := fr[0]
		if !yield(h[i]) {
			return
		}
		fr[0] = fr[len(fr)-1]
		fr = fr[:len(fr)-1]
		siftDown(len(fr), 0, less, func(a, b int) { fr[a], fr[b] = fr[b], fr[a] })
		for _, c := range [2]int{2*i + 1, 2*i + 2} {
			if c < len(h) {
				fr = append(fr, c)
				siftUp(len(fr)-1, less, func(a, b int) { fr[a], fr[b] = fr[b], fr[a] })
			}
		}
	}
}

func siftUp(j int, less func(a, b int) bool, swap func(a, b int)) {
	for j > 0 {
		p := (j - 1) / 2
		if !less(j, p) {
			return
		}
		swap(j, p)
		j = p
	}
}

func siftDown(n, i int, less func(a, b int) bool, swap func(a, b int)) {
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if c+1 < n && less(c+1, c) {
			c++
		}
		if !less(c, i) {
			return
		}
		swap(i, c)
		i = c
	}
}

// list is the totals in their snapshot order.
func (t QueueTotals) list() []uint64 {
	return []uint64{t.Enqueued, t.Popped, t.Acked, t.DeadLettered, t.Purged, t.Expired}
}

// HasQueue reports whether queue exists: it was created (by an enqueue or
// a config) and not deleted since.
func (f *FSM) HasQueue(queue string) bool {
	_, ok := f.queues[queue]
	return ok
}

// QueueCounts are what Metrics shows of a queue, read in O(1) (unlike
// Stats, leases and delays whose time has come but were not acted on yet
// still count as leased and delayed).
type QueueCounts struct {
	Name                   string
	Depth, Leased, Delayed int
	Bytes                  int64
	Totals                 QueueTotals
}

// Counts returns every queue's counts, in no order.
func (f *FSM) Counts() []QueueCounts {
	out := make([]QueueCounts, 0, len(f.queues))
	for name, q := range f.queues {
		out = append(out, QueueCounts{Name: name, Depth: q.msgs.len() - q.leasedN - q.delayedN, Leased: q.leasedN,
			Delayed: q.delayedN, Bytes: q.bytes(), Totals: q.totals})
	}
	return out
}
