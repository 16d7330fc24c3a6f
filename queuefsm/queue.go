package queuefsm

import (
	"container/heap"
	"fmt"
	"math"
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
// messages share sits behind meta, a lease's token is rebuilt from the
// number of the command that took the lease, the enqueue time is kept to
// the second and gen in 32 bits (see FSM.Capture for its wrap).
type msg struct {
	id         uint64
	body       string   // never changes
	meta       *msgMeta // nil: no content type, no origin
	at         int64    // leased: lease expiry; delayed: when it becomes ready
	lease      uint64   // leased: the seq of the lease command (see token)
	gen        uint32   // the FSM's gen when this record was made
	deliveries uint32   // saturates
	enqueued   uint32   // cluster time in seconds when stored (see seconds)
	state      msgState
}

// seconds is cluster time ms as a record keeps it: whole seconds, within
// uint32 (cluster time starts from Unix ms stamps: good until 2106).
func seconds(ms int64) uint32 {
	return uint32(min(max(ms, 0)/1000, math.MaxUint32))
}

// cost is what m counts for against limits (see Cost).
func (m *msg) cost() int64 {
	if m.meta == nil {
		return MessageCost("", len(m.body))
	}
	return Cost(m.meta.contentType, len(m.body), m.meta.group, m.meta.attrs)
}

// msgMeta is what messages share: their content type and, for dead
// letters, where they come from; and what only one message has, its group
// and attributes. It never changes once made.
type msgMeta struct {
	contentType string
	origin      *Origin
	group       string
	attrs       []Attribute
}

func (m *msg) attrs() []Attribute {
	if m.meta == nil {
		return nil
	}
	return m.meta.attrs
}

// metaFor returns the meta of a new message: shared (see metaIn) when it
// has neither group nor attributes.
func metaFor(shared map[string]*msgMeta, ct, group string, attrs []Attribute) *msgMeta {
	if group == "" && len(attrs) == 0 {
		return metaIn(shared, ct)
	}
	return &msgMeta{contentType: ct, group: group, attrs: attrs}
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
// token of its own. The seq is written as its entry's index, then "-"
// and the command's position in its group when not 0 (see Apply): a
// token from before groups, "index.id", reads as position 0, so tokens
// and snapshots stay as they were.
func (m *msg) token() string {
	if m.state != stateLeased {
		return ""
	}
	s := strconv.FormatUint(m.lease>>SeqPosBits, 36)
	if pos := m.lease & (1<<SeqPosBits - 1); pos != 0 {
		s += "-" + strconv.FormatUint(pos, 36)
	}
	return s + "." + strconv.FormatUint(m.id, 36)
}

// parseToken returns the lease seq and message id a token names.
func parseToken(token string) (lease, id uint64, ok bool) {
	a, b, found := strings.Cut(token, ".")
	if !found {
		return 0, 0, false
	}
	index, p, grouped := strings.Cut(a, "-")
	lease, err1 := strconv.ParseUint(index, 36, 64)
	id, err2 := strconv.ParseUint(b, 36, 64)
	if err1 != nil || err2 != nil || lease >= 1<<(64-SeqPosBits) {
		return 0, 0, false
	}
	var pos uint64
	if grouped {
		var err error
		if pos, err = strconv.ParseUint(p, 36, 64); err != nil || pos == 0 || pos >= 1<<SeqPosBits {
			return 0, 0, false
		}
	}
	return lease<<SeqPosBits | pos, id, true
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
	return Message{ID: m.id, ContentType: m.contentType(), Body: m.body, Deliveries: uint64(m.deliveries), Origin: m.origin(),
		Group: m.group(), Attributes: m.attrs(), Enqueued: int64(m.enqueued) * 1000}
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
	maxMessages   int64 // 0: no limit of the queue's own
	maxBytes      int64 // 0: no limit of the queue's own
	settings      QueueSettings
	// created and modified are when the queue was made and last
	// configured, in cluster time (ms).
	created, modified int64

	// groups holds the message groups with ready or leased messages,
	// avail those a take may serve now, groupedReady how many ready
	// messages are in groups (see groups.go).
	groups       map[string]*group
	avail        groupHeap
	groupedReady int

	keys     map[string]seenKey
	keyOrder []keyAt // FIFO of keys by the time they were stored

	// msgBytes and keyBytes are what the stored messages and remembered
	// keys cost (MessageCost, KeyCost), kept with every change; the FSM's
	// bytes is their sum over all queues (see FSM.charge).
	msgBytes int64
	keyBytes int64
	totals   QueueTotals
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

func newQueue(name string, lastID uint64) *queue {
	return &queue{name: name, lastID: lastID, keys: map[string]seenKey{}}
}

func (q *queue) bytes() int64 { return q.msgBytes + q.keyBytes }

// store appends a new message, ready at readyAt (at once if that is not
// after now), and counts it.
func (q *queue) store(f *FSM, contentType, body string, readyAt int64) *msg {
	return q.storeMsg(f, &msg{body: body, meta: metaIn(f.metas, contentType)}, readyAt)
}

// storeItem appends a new message with its group and attributes (strings
// decoded from a command are copies already).
func (q *queue) storeItem(f *FSM, it *BatchItem, readyAt int64) *msg {
	meta := metaFor(f.metas, it.ContentType, it.Group, it.Attributes)
	return q.storeMsg(f, &msg{body: it.Body, meta: meta}, readyAt)
}

// storeMsg gives m the next id and files it; m carries body and meta.
func (q *queue) storeMsg(f *FSM, m *msg, readyAt int64) *msg {
	q.lastID++
	m.id, m.gen, m.enqueued = q.lastID, f.gen, seconds(f.now)
	q.msgs.add(m)
	q.makeReady(m, readyAt, f.now)
	f.charge(q, m.cost(), 0)
	q.totals.Enqueued++
	return m
}

// drop deletes m from the table and uncounts it.
func (q *queue) drop(f *FSM, m *msg) {
	if m.state == stateLeased {
		q.leasedN--
		q.leaseEnded(m)
	}
	q.msgs.remove(m.id)
	f.charge(q, -m.cost(), 0)
}

// makeReady puts m in line: at once, or when readyAt comes. m must be
// owned (see own).
func (q *queue) makeReady(m *msg, readyAt, now int64) {
	m.lease = 0
	if readyAt > now {
		m.state, m.at = stateDelayed, readyAt
		q.delayedN++
		q.leaseStarted(m) // a delayed message holds its group too
		heap.Push(&q.timers, timer{at: readyAt, id: m.id})
		return
	}
	m.state, m.at = stateReady, 0
	q.fileReady(m)
}

// nextReady removes the head of the ready line and returns it, first
// moving messages that have been delivered max_deliveries times to the
// dead-letter queue. Nil when nothing is ready.
func (q *queue) nextReady(f *FSM) *msg {
	for {
		m, ok := q.popNext()
		if !ok {
			return nil
		}
		if m == nil {
			continue
		}
		if q.exhausted(m) {
			q.deadLetter(f, m)
			continue
		}
		return m
	}
}

// exhausted reports whether m has been delivered max_deliveries times:
// the take that finds it moves it to the dead-letter queue instead.
func (q *queue) exhausted(m *msg) bool {
	return q.maxDeliveries > 0 && uint64(m.deliveries) >= q.maxDeliveries
}

// deadLetter moves m to the dead-letter queue (or drops it if none is set)
// with its history. It never refuses: the message is stored and counted
// already, and costs the same in the dead-letter queue, so the cluster's
// bytes do not change; the dead-letter queue is made again if it was
// deleted, past max_queues if need be, and may go past its own limits.
func (q *queue) deadLetter(f *FSM, m *msg) {
	q.drop(f, m)
	q.totals.DeadLettered++
	if q.dlq == "" {
		return
	}
	meta := &msgMeta{contentType: m.contentType(), origin: &Origin{Queue: q.name, ID: m.id, Deliveries: uint64(m.deliveries)},
		group: m.group(), attrs: m.attrs()}
	f.queue(q.dlq).storeMsg(f, &msg{body: m.body, meta: meta}, 0)
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

// seen returns what is remembered of key (none in a nil queue).
func (q *queue) seen(key string) (seenKey, bool) {
	if q == nil || key == "" {
		return seenKey{}, false
	}
	s, ok := q.keys[key]
	return s, ok
}

// remember stores an idempotency key, forgetting the oldest past
// MaxDedupeKeys.
func (q *queue) remember(f *FSM, key string, id uint64, sum [32]byte) {
	q.keys[key] = seenKey{id: id, sum: sum, at: f.now}
	q.keyOrder = append(q.keyOrder, keyAt{key: key, at: f.now})
	f.charge(q, 0, KeyCost(key))
	for len(q.keys) > MaxDedupeKeys {
		q.dropOldestKey(f)
	}
}

// forgetKeys drops keys older than the dedupe window.
func (q *queue) forgetKeys(f *FSM) {
	for len(q.keyOrder) > 0 && q.keyOrder[0].at+DedupeWindow <= f.now {
		q.dropOldestKey(f)
	}
}

func (q *queue) dropOldestKey(f *FSM) {
	k := q.keyOrder[0]
	q.keyOrder = q.keyOrder[1:]
	if s, ok := q.keys[k.key]; ok && s.at == k.at {
		delete(q.keys, k.key)
		f.charge(q, 0, -KeyCost(k.key))
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
