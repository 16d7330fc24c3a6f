package queuefsm

import (
	"container/heap"
	"fmt"
	"strconv"
	"strings"
)

type msgState byte

const (
	stateReady   msgState = 0
	stateLeased  msgState = 1
	stateDelayed msgState = 2
)

// msg is a stored message and where it stands. A queue holds a million
// of them, so the record is kept to 64 bytes (one size class): what most
// messages share sits behind meta, and a lease's token is rebuilt from
// the number of the command that took the lease.
type msg struct {
	id         uint64
	body       string   // never changes
	meta       *msgMeta // nil: no content type, no origin
	at         int64    // leased: lease expiry; delayed: when it becomes ready
	lease      uint64   // leased: the seq of the lease command (see token)
	gen        uint64   // the FSM's gen when this record was made
	deliveries uint32   // saturates
	state      msgState
}

// msgMeta is what messages share: their content type and, for dead
// letters, where they come from. It never changes once made.
type msgMeta struct {
	contentType string
	origin      *Origin
}

func (m *msg) contentType() string {
	if m.meta == nil {
		return ""
	}
	return m.meta.contentType
}

func (m *msg) origin() *Origin {
	if m.meta == nil {
		return nil
	}
	return m.meta.origin
}

// token is the lease token of a leased message: the lease command's seq
// and the message id, in base 36, so that every lease of a message has a
// token of its own.
func (m *msg) token() string {
	if m.state != stateLeased {
		return ""
	}
	return strconv.FormatUint(m.lease, 36) + "." + strconv.FormatUint(m.id, 36)
}

// parseToken returns the lease seq and message id a token names.
func parseToken(token string) (lease, id uint64, ok bool) {
	a, b, found := strings.Cut(token, ".")
	if !found {
		return 0, 0, false
	}
	lease, err1 := strconv.ParseUint(a, 36, 64)
	id, err2 := strconv.ParseUint(b, 36, 64)
	return lease, id, err1 == nil && err2 == nil
}

// own returns m fit to be changed. A record made before the last Capture
// may be held by that capture's view, so it is replaced by a copy, once.
func (q *queue) own(f *FSM, m *msg) *msg {
	if m.gen == f.gen {
		return m
	}
	c := *m
	c.gen = f.gen
	q.msgs.replace(&c)
	return &c
}

func (m *msg) public() Message {
	return Message{ID: m.id, ContentType: m.contentType(), Body: m.body, Deliveries: uint64(m.deliveries), Origin: m.origin()}
}

// queue keeps every stored message by id. Ready ids sit in a min-heap, so
// the head is always the oldest ready message and a message given back
// returns to its original place. Leases and delays share a heap of timers
// by (time, id), cleaned lazily: a timer is acted on only if the message
// still waits for exactly that time.
type queue struct {
	name     string
	lastID   uint64 // highest id ever assigned; ids are never reused
	msgs     msgTable
	ready    idHeap
	timers   timerHeap
	leasedN  int
	delayedN int

	maxDeliveries uint64 // 0: unlimited
	dlq           string

	keys     map[string]seenKey
	keyOrder []keyAt // FIFO of keys by the time they were stored
}

type seenKey struct {
	id  uint64
	sum [32]byte
	at  int64
}

type keyAt struct {
	key string
	at  int64
}

func newQueue(name string) *queue {
	return &queue{name: name, keys: map[string]seenKey{}}
}

// makeReady puts m in line: at once, or when readyAt comes. m must be
// owned (see own).
func (q *queue) makeReady(m *msg, readyAt, now int64) {
	m.lease = 0
	if readyAt > now {
		m.state, m.at = stateDelayed, readyAt
		q.delayedN++
		heap.Push(&q.timers, timer{at: readyAt, id: m.id})
		return
	}
	m.state, m.at = stateReady, 0
	heap.Push(&q.ready, m.id)
}

// nextReady removes the head of the ready line and returns it, first
// moving messages that have been delivered max_deliveries times to the
// dead-letter queue. Nil when nothing is ready.
func (q *queue) nextReady(f *FSM) *msg {
	for len(q.ready) > 0 {
		m := q.msgs.get(heap.Pop(&q.ready).(uint64))
		if m == nil || m.state != stateReady {
			continue
		}
		if q.maxDeliveries > 0 && uint64(m.deliveries) >= q.maxDeliveries {
			q.deadLetter(f, m)
			continue
		}
		return m
	}
	return nil
}

// deadLetter moves m to the dead-letter queue (or drops it if none is set)
// with its history.
func (q *queue) deadLetter(f *FSM, m *msg) {
	q.msgs.remove(m.id)
	if q.dlq == "" {
		return
	}
	d := f.queue(q.dlq)
	d.lastID++
	meta := &msgMeta{contentType: m.contentType(), origin: &Origin{Queue: q.name, ID: m.id, Deliveries: uint64(m.deliveries)}}
	dm := &msg{id: d.lastID, body: m.body, meta: meta, gen: f.gen}
	d.msgs.add(dm)
	d.makeReady(dm, 0, 0)
}

// remove deletes m for good (a pop or an ack).
func (q *queue) remove(m *msg) {
	if m.state == stateLeased {
		q.leasedN--
	}
	q.msgs.remove(m.id)
}

// leased returns message id if token holds its lease.
func (q *queue) leased(id uint64, token string) (*msg, error) {
	m := q.msgs.get(id)
	if m == nil {
		return nil, fmt.Errorf("%w: %d", ErrNoMessage, id)
	}
	if lease, tid, ok := parseToken(token); !ok || tid != id || m.state != stateLeased || m.lease != lease {
		return nil, fmt.Errorf("%w: message %d", ErrLeaseLost, id)
	}
	return m, nil
}

// remember stores an idempotency key.
func (q *queue) remember(key string, id uint64, sum [32]byte, now int64) {
	q.keys[key] = seenKey{id: id, sum: sum, at: now}
	q.keyOrder = append(q.keyOrder, keyAt{key: key, at: now})
	for len(q.keys) > MaxDedupeKeys {
		q.dropOldestKey()
	}
}

// forgetKeys drops keys older than the dedupe window.
func (q *queue) forgetKeys(now int64) {
	for len(q.keyOrder) > 0 && q.keyOrder[0].at+DedupeWindow <= now {
		q.dropOldestKey()
	}
}

func (q *queue) dropOldestKey() {
	k := q.keyOrder[0]
	q.keyOrder = q.keyOrder[1:]
	if s, ok := q.keys[k.key]; ok && s.at == k.at {
		delete(q.keys, k.key)
	}
}

// idHeap is a min-heap of message ids.
type idHeap []uint64

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// timer wakes message id at time at.
type timer struct {
	at int64
	id uint64
}

type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].id < h[j].id
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
