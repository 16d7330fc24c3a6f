package queuefsm

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// Snapshot versions; older ones are still restored. Version 1 holds ready
// messages only; version 2 adds the clock, leases, delays, dead letters and
// idempotency keys; version 3 adds, after the clock, the proposers' clocks
// (a count, then id, epoch, stamp and cluster time per proposer, by id).
// Version 4 adds, after the proposers' clocks, the cluster limits
// (max_queues, max_bytes), idFloor and the raised alarms (a count, then
// node ids ascending); per queue, after its dead-letter queue, its
// max_messages, max_bytes and totals (enqueued, popped, acked, dead
// lettered, purged); per message, after its lease token, its enqueue time
// in seconds. Byte counts are not stored: a restore counts them again.
// Versions 1 and 2 restore with no proposer known; versions 1 to 3 with
// the default limits, no alarm, idFloor 0, no queue limits, totals that
// start at the messages held, and the snapshot's clock as the enqueue time
// of every message. Version 5 adds, per queue, after its totals the
// expired total, its settings (visibility, delay, receive wait, maximum
// message size, retention, content deduplication) and its created and
// modified times; per message, after its enqueue time, its group and its
// attributes (a count, then name, type and value of each). Versions 1 to
// 4 restore with no settings, queues created and modified at the
// snapshot's clock, and messages without group or attributes.
const (
	snapshotV1      = 1
	snapshotV2      = 2
	snapshotV3      = 3
	snapshotV4      = 4
	snapshotVersion = 5
)

// maxSnapshotField bounds one length-prefixed field read from a snapshot,
// so a damaged length cannot ask for an absurd allocation.
const maxSnapshotField = 1 << 30

// ErrBadSnapshot reports snapshot bytes that cannot be restored.
var ErrBadSnapshot = errors.New("queuefsm: malformed snapshot")

// Snapshot encodes the whole state in memory; see Capture. Tests and small
// states use it; a node streams its snapshots through Capture instead.
func (f *FSM) Snapshot() ([]byte, error) {
	var b bytes.Buffer
	err := f.WriteState(&b)
	return b.Bytes(), err
}

// Capture takes a consistent view of the state and returns a function that
// writes it to w, which may run on another goroutine while Apply goes on.
//
// The view costs one pointer per chunk of a queue's table: chunks and
// message records are copied on write (see msgTable.own and queue.own), so
// nothing the view holds changes after this call, and bodies never change
// at all. The encoding uses logical
// content only (queues by name, messages by id, keys in the order they
// were stored), never heap layout, so equal states give equal bytes.
func (f *FSM) Capture() func(io.Writer) error {
	write := f.view(true)
	f.gen++ // every record the view holds is now copied before a change
	if f.gen == 0 {
		f.restamp()
	}
	return write
}

// restamp copies every record stamped with gen 0 after gen wrapped (once
// in 2³² captures): such a record was made 2³² captures ago, may be held
// by the view just taken, and would pass as new.
func (f *FSM) restamp() {
	for _, q := range f.queues {
		for ci, c := range q.msgs.chunks {
			for si, s := range c.slots {
				if s.m != nil && s.m.gen == f.gen {
					m := *s.m
					q.msgs.own(ci).slots[si].m = &m
				}
			}
		}
	}
}

// WriteState writes the state to w at once, as Capture's function would. It
// changes nothing, so it may run beside other readers while no command is
// applied.
func (f *FSM) WriteState(w io.Writer) error { return f.view(false)(w) }

// view copies the state's outline and returns the function that writes it;
// see Capture. Unless shared, the function must run before the next change.
func (f *FSM) view(share bool) func(io.Writer) error {
	type capturedQueue struct {
		name   string
		lastID uint64
		config QueueConfig
		totals QueueTotals
		msgs   tableView
		n      int
		keys   []keyAt
		seen   []seenKey
	}
	now, clocks, limits, idFloor, alarms := f.now, slices.Clone(f.clocks), f.limits, f.idFloor, f.Alarms()
	qs := make([]capturedQueue, 0, len(f.queues))
	for _, name := range f.names() {
		q := f.queues[name]
		cq := capturedQueue{name: name, lastID: q.lastID, config: q.config(), totals: q.totals,
			msgs: q.msgs.view(share), n: q.msgs.len()}
		for _, k := range q.keyOrder {
			if s, ok := q.keys[k.key]; ok && s.at == k.at {
				cq.keys = append(cq.keys, k)
				cq.seen = append(cq.seen, s)
			}
		}
		qs = append(qs, cq)
	}
	return func(w io.Writer) error {
		e := encoder{w: bufio.NewWriterSize(w, 256<<10)}
		e.byte(snapshotVersion)
		e.varint(now)
		e.uvarint(uint64(len(clocks)))
		for _, p := range clocks {
			e.uvarint(p.id)
			e.varint(p.epoch)
			e.varint(p.stamp)
			e.varint(p.at)
		}
		e.varint(limits.MaxQueues)
		e.varint(limits.MaxBytes)
		e.uvarint(idFloor)
		e.uvarint(uint64(len(alarms)))
		for _, id := range alarms {
			e.uvarint(id)
		}
		e.uvarint(uint64(len(qs)))
		for _, q := range qs {
			e.string(q.name)
			e.uvarint(q.lastID)
			e.uvarint(q.config.MaxDeliveries)
			e.string(q.config.DeadLetterQueue)
			e.varint(q.config.MaxMessages)
			e.varint(q.config.MaxBytes)
			for _, n := range q.totals.list() {
				e.uvarint(n)
			}
			for _, v := range q.config.QueueSettings.list() {
				e.varint(v)
			}
			e.byte(boolByte(q.config.ContentDedup))
			e.varint(q.config.Created)
			e.varint(q.config.Modified)
			e.uvarint(uint64(q.n))
			q.msgs.each(func(m *msg) {
				e.uvarint(m.id)
				e.string(m.contentType())
				e.string(m.body)
				e.uvarint(uint64(m.deliveries))
				e.byte(byte(m.state))
				e.varint(m.at)
				e.string(m.token())
				e.uvarint(uint64(m.enqueued))
				e.string(m.group())
				e.uvarint(uint64(len(m.attrs())))
				for _, a := range m.attrs() {
					e.string(a.Name)
					e.string(a.Type)
					e.string(a.Value)
				}
				if o := m.origin(); o == nil {
					e.byte(0)
				} else {
					e.byte(1)
					e.string(o.Queue)
					e.uvarint(o.ID)
					e.uvarint(o.Deliveries)
				}
			})
			e.uvarint(uint64(len(q.keys)))
			for i, k := range q.keys {
				s := q.seen[i]
				e.string(k.key)
				e.uvarint(s.id)
				e.raw(s.sum[:])
				e.varint(s.at)
			}
		}
		if e.err != nil {
			return fmt.Errorf("queuefsm: write snapshot: %w", e.err)
		}
		if err := e.w.Flush(); err != nil {
			return fmt.Errorf("queuefsm: write snapshot: %w", err)
		}
		return nil
	}
}

// Restore replaces the state with the one encoded in data. On error the
// state is unchanged.
func (f *FSM) Restore(data []byte) error { return f.RestoreFrom(bytes.NewReader(data)) }

// RestoreFrom replaces the state with the one r yields, reading r to its
// end: trailing bytes, or an error from r at its end, fail the restore. On
// error the state is unchanged.
func (f *FSM) RestoreFrom(src io.Reader) error {
	r := decoder{r: bufio.NewReaderSize(src, 256<<10)}
	version := r.byte()
	if r.err == nil && (version < snapshotV1 || version > snapshotVersion) {
		return fmt.Errorf("%w: version %d", ErrBadSnapshot, version)
	}
	// The new state is built in g, then moved into f: on error f is
	// unchanged.
	g := &FSM{queues: make(map[string]*queue), metas: make(map[string]*msgMeta), gen: f.gen,
		limits: ClusterLimits{MaxQueues: DefaultMaxQueues, MaxBytes: DefaultMaxBytes}}
	if version >= snapshotV2 {
		g.now = r.varint()
	}
	if version >= snapshotV3 {
		g.clocks = r.clocks()
	}
	if version >= snapshotV4 {
		g.limits.MaxQueues, g.limits.MaxBytes = r.limit(), r.limit()
		g.idFloor = r.uvarint()
		g.alarms = r.alarms()
	}
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		r.queue(g, version)
	}
	if r.err == nil {
		switch _, err := r.r.ReadByte(); {
		case err == nil:
			r.err = errors.New("trailing bytes")
		case !errors.Is(err, io.EOF):
			r.err = err
		}
	}
	if r.err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, r.err)
	}
	*f = *g
	return nil
}

// queue reads one queue into g, counting its bytes as it files them.
func (d *decoder) queue(g *FSM, version byte) {
	q := newQueue(d.string(), 0)
	q.lastID = d.uvarint()
	q.created, q.modified = g.now, g.now
	if version >= snapshotV2 {
		q.maxDeliveries, q.dlq = d.uvarint(), d.string()
	}
	if version >= snapshotV4 {
		q.maxMessages, q.maxBytes = d.limit(), d.limit()
		t := &q.totals
		for _, n := range []*uint64{&t.Enqueued, &t.Popped, &t.Acked, &t.DeadLettered, &t.Purged} {
			*n = d.uvarint()
		}
	}
	if version >= snapshotVersion {
		q.totals.Expired = d.uvarint()
		s := &q.settings
		for _, v := range []*int64{&s.Visibility, &s.Delay, &s.ReceiveWait, &s.MaxMessageSize, &s.Retention} {
			*v = d.limit()
		}
		s.ContentDedup = d.bool()
		q.created, q.modified = d.varint(), d.varint()
	}
	var ms []*msg
	for count := d.uvarint(); count > 0 && d.err == nil; count-- {
		ms = append(ms, d.msg(g, version))
	}
	slices.SortFunc(ms, func(a, b *msg) int { return cmp.Compare(a.id, b.id) })
	for i, m := range ms {
		if i > 0 && ms[i-1].id == m.id {
			d.err = fmt.Errorf("message %d twice in queue %q", m.id, q.name)
			return
		}
		q.restoreMsg(g, m)
	}
	if version < snapshotV4 {
		q.totals.Enqueued = uint64(len(ms))
	}
	if version >= snapshotV2 {
		for k := d.uvarint(); k > 0 && d.err == nil; k-- {
			key, s := d.string(), seenKey{id: d.uvarint()}
			d.full(s.sum[:])
			s.at = d.varint()
			q.keys[key] = s
			q.keyOrder = append(q.keyOrder, keyAt{key: key, at: s.at})
			g.charge(q, 0, KeyCost(key))
		}
	}
	heap.Init(&q.ready)
	if g.queues[q.name] != nil {
		d.err = fmt.Errorf("queue %q twice", q.name)
	}
	g.queues[q.name] = q
}

// msg reads one message of a snapshot of version.
func (d *decoder) msg(g *FSM, version byte) *msg {
	m := &msg{id: d.uvarint(), gen: g.gen, enqueued: seconds(g.now)}
	ct := d.string()
	m.body, m.meta = d.string(), metaIn(g.metas, ct)
	if version < snapshotV2 {
		return m
	}
	deliveries, state, at, token := d.uvarint(), msgState(d.byte()), d.varint(), d.string()
	m.deliveries, m.state, m.at = uint32(min(deliveries, math.MaxUint32)), state, at
	if state > stateDelayed && d.err == nil {
		// Filed as ready, it would never be taken nor removed, and a
		// queue with it would wake its waiters for ever.
		d.err = fmt.Errorf("message %d: unknown state %d", m.id, state)
	}
	if state == stateLeased {
		lease, id, ok := parseToken(token)
		if !ok || id != m.id {
			d.err = fmt.Errorf("message %d: lease token %q", m.id, token)
		}
		m.lease = lease
	}
	if version >= snapshotV4 {
		if s := d.uvarint(); s <= math.MaxUint32 {
			m.enqueued = uint32(s)
		} else if d.err == nil {
			d.err = fmt.Errorf("message %d: enqueue time %d", m.id, s)
		}
	}
	var group string
	var attrs []Attribute
	if version >= snapshotVersion {
		group, attrs = d.string(), d.attrs()
		if err := checkExtras(0, group, attrs); err != nil && d.err == nil {
			d.err = fmt.Errorf("message %d: %w", m.id, err)
		}
		m.meta = metaFor(g.metas, ct, group, attrs)
	}
	if d.byte() == 1 {
		m.meta = &msgMeta{contentType: ct, origin: &Origin{Queue: d.string(), ID: d.uvarint(), Deliveries: d.uvarint()},
			group: group, attrs: attrs}
	}
	return m
}

// attrs reads a message's attributes: at most MaxAttributes.
func (d *decoder) attrs() []Attribute {
	n := d.uvarint()
	if n > MaxAttributes && d.err == nil {
		d.err = fmt.Errorf("%d attributes", n)
	}
	var out []Attribute
	for ; n > 0 && d.err == nil; n-- {
		out = append(out, Attribute{Name: d.string(), Type: d.string(), Value: d.string()})
	}
	return out
}

// bool reads a byte that must be 0 or 1.
func (d *decoder) bool() bool {
	b := d.byte()
	if b > 1 && d.err == nil {
		d.err = fmt.Errorf("bool byte %d", b)
	}
	return b == 1
}

// limit reads a limit: 0 or more.
func (d *decoder) limit() int64 {
	v := d.varint()
	if v < 0 && d.err == nil {
		d.err = fmt.Errorf("limit %d", v)
	}
	return v
}

// alarms reads the raised alarms: node ids from 1 to MaxProposer, strictly
// ascending.
func (d *decoder) alarms() []uint64 {
	n := d.uvarint()
	if d.err == nil && n > MaxProposer {
		d.err = fmt.Errorf("%d alarms", n)
	}
	var out []uint64
	for ; n > 0 && d.err == nil; n-- {
		id := d.uvarint()
		if d.err == nil && (id == 0 || id > MaxProposer || len(out) > 0 && id <= out[len(out)-1]) {
			d.err = fmt.Errorf("alarm of node %d out of order or range", id)
		}
		out = append(out, id)
	}
	return out
}

// clocks reads the proposers' clocks: ids from 1 to MaxProposer, strictly
// ascending, as written.
func (d *decoder) clocks() []proposerClock {
	n := d.uvarint()
	if d.err == nil && n > MaxProposer {
		d.err = fmt.Errorf("%d proposers", n)
	}
	var out []proposerClock
	for ; n > 0 && d.err == nil; n-- {
		p := proposerClock{id: d.uvarint(), epoch: d.varint(), stamp: d.varint(), at: d.varint()}
		if d.err == nil && (p.id == 0 || p.id > MaxProposer || len(out) > 0 && p.id <= out[len(out)-1].id) {
			d.err = fmt.Errorf("proposer %d out of order or range", p.id)
		}
		out = append(out, p)
	}
	return out
}

// restoreMsg files a restored message by its state, and counts it.
func (q *queue) restoreMsg(g *FSM, m *msg) {
	q.msgs.add(m)
	g.charge(q, m.cost(), 0)
	switch {
	case m.state == stateLeased:
		q.leasedN++
		q.leaseStarted(m)
		heap.Push(&q.timers, timer{at: m.at, id: m.id})
	case m.state == stateDelayed:
		q.delayedN++
		q.leaseStarted(m)
		heap.Push(&q.timers, timer{at: m.at, id: m.id})
	case m.group() != "":
		q.fileReady(m)
	default:
		q.ready = append(q.ready, m.id) // ordered once the queue is read
	}
}

// encoder writes snapshot fields, remembering the first error.
type encoder struct {
	w   *bufio.Writer
	buf [binary.MaxVarintLen64]byte
	err error
}

func (e *encoder) raw(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *encoder) byte(c byte) {
	if e.err == nil {
		e.err = e.w.WriteByte(c)
	}
}

func (e *encoder) uvarint(v uint64) { e.raw(binary.AppendUvarint(e.buf[:0], v)) }
func (e *encoder) varint(v int64)   { e.raw(binary.AppendVarint(e.buf[:0], v)) }

func (e *encoder) string(s string) {
	e.uvarint(uint64(len(s)))
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

// decoder reads snapshot fields from a stream, remembering the first
// error; a stream that ends inside a field is truncated.
type decoder struct {
	r   *bufio.Reader
	err error
}

func (d *decoder) fail(err error) {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	d.err = err
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	c, err := d.r.ReadByte()
	if err != nil {
		d.fail(err)
	}
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d.r)
	if err != nil {
		d.fail(err)
	}
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(d.r)
	if err != nil {
		d.fail(err)
	}
	return v
}

func (d *decoder) full(b []byte) {
	if d.err != nil {
		return
	}
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail(err)
	}
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > maxSnapshotField {
		d.err = fmt.Errorf("field of %d bytes", n)
		return nil
	}
	b := make([]byte, n)
	d.full(b)
	return b
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return ""
	}
	if n <= uint64(d.r.Size()) { // no intermediate copy
		b, err := d.r.Peek(int(n))
		if err != nil {
			d.fail(err)
			return ""
		}
		s := string(b)
		_, _ = d.r.Discard(int(n)) // cannot fail after the Peek
		return s
	}
	if n > maxSnapshotField {
		d.err = fmt.Errorf("field of %d bytes", n)
		return ""
	}
	b := make([]byte, n)
	d.full(b)
	return string(b)
}
