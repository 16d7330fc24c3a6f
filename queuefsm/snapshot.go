package queuefsm

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Snapshot versions. Version 1 (ready messages only) is still restored.
const (
	snapshotV1      = 1
	snapshotVersion = 2
)

// ErrBadSnapshot reports snapshot bytes that cannot be restored.
var ErrBadSnapshot = errors.New("queuefsm: malformed snapshot")

// Snapshot encodes the whole state from its logical content only (queues
// by name, messages by id, keys in the order they were stored), never from
// heap layout, so two equal states always encode to equal bytes.
func (f *FSM) Snapshot() ([]byte, error) { return f.Capture()() }

// Capture copies the state (message records, not their bodies, which
// never change) and returns a function that encodes the copy exactly as
// Snapshot would. The copy is O(messages) memory moves; the sorting and
// encoding, the expensive part, can then run on another goroutine while
// the state machine goes on.
func (f *FSM) Capture() func() ([]byte, error) {
	type capturedQueue struct {
		name          string
		lastID        uint64
		maxDeliveries uint64
		dlq           string
		msgs          []msg
		keys          []keyAt
		seen          []seenKey
	}
	now := f.now
	qs := make([]capturedQueue, 0, len(f.queues))
	for _, name := range f.names() {
		q := f.queues[name]
		cq := capturedQueue{name: name, lastID: q.lastID, maxDeliveries: q.maxDeliveries, dlq: q.dlq,
			msgs: make([]msg, 0, len(q.msgs))}
		for _, m := range q.msgs {
			cq.msgs = append(cq.msgs, *m)
		}
		for _, k := range q.keyOrder {
			if s, ok := q.keys[k.key]; ok && s.at == k.at {
				cq.keys = append(cq.keys, k)
				cq.seen = append(cq.seen, s)
			}
		}
		qs = append(qs, cq)
	}
	return func() ([]byte, error) {
		size := 64
		for _, q := range qs {
			for i := range q.msgs {
				size += 32 + len(q.msgs[i].body) + len(q.msgs[i].contentType) + len(q.msgs[i].token)
			}
		}
		b := make([]byte, 0, size)
		b = append(b, snapshotVersion)
		b = binary.AppendVarint(b, now)
		b = binary.AppendUvarint(b, uint64(len(qs)))
		for _, q := range qs {
			b = appendString(b, q.name)
			b = binary.AppendUvarint(b, q.lastID)
			b = binary.AppendUvarint(b, q.maxDeliveries)
			b = appendString(b, q.dlq)
			sort.Slice(q.msgs, func(i, j int) bool { return q.msgs[i].id < q.msgs[j].id })
			b = binary.AppendUvarint(b, uint64(len(q.msgs)))
			for i := range q.msgs {
				m := &q.msgs[i]
				b = binary.AppendUvarint(b, m.id)
				b = appendString(b, m.contentType)
				b = binary.AppendUvarint(b, uint64(len(m.body)))
				b = append(b, m.body...)
				b = binary.AppendUvarint(b, m.deliveries)
				b = append(b, byte(m.state))
				b = binary.AppendVarint(b, m.at)
				b = appendString(b, m.token)
				if m.origin == nil {
					b = append(b, 0)
				} else {
					b = append(b, 1)
					b = appendString(b, m.origin.Queue)
					b = binary.AppendUvarint(b, m.origin.ID)
					b = binary.AppendUvarint(b, m.origin.Deliveries)
				}
			}
			b = binary.AppendUvarint(b, uint64(len(q.keys)))
			for i, k := range q.keys {
				s := q.seen[i]
				b = appendString(b, k.key)
				b = binary.AppendUvarint(b, s.id)
				b = append(b, s.sum[:]...)
				b = binary.AppendVarint(b, s.at)
			}
		}
		return b, nil
	}
}

// Restore replaces the state with the one encoded in data. On error the
// state is unchanged.
func (f *FSM) Restore(data []byte) error {
	r := reader{b: data}
	version := r.byte()
	if version != snapshotV1 && version != snapshotVersion {
		return fmt.Errorf("%w: version %d", ErrBadSnapshot, version)
	}
	var now int64
	if version == snapshotVersion {
		now = r.varint()
	}
	queues := make(map[string]*queue)
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		q := newQueue(r.string())
		q.lastID = r.uvarint()
		if version == snapshotVersion {
			q.maxDeliveries, q.dlq = r.uvarint(), r.string()
		}
		count := r.uvarint()
		if count > uint64(len(r.b)) { // each message takes at least one byte
			return fmt.Errorf("%w: queue %q claims %d messages", ErrBadSnapshot, q.name, count)
		}
		for ; count > 0 && r.err == nil; count-- {
			m := &msg{id: r.uvarint(), contentType: r.string(), body: []byte(r.string())}
			if version == snapshotVersion {
				m.deliveries, m.state, m.at, m.token = r.uvarint(), msgState(r.byte()), r.varint(), r.string()
				if r.byte() == 1 {
					m.origin = &Origin{Queue: r.string(), ID: r.uvarint(), Deliveries: r.uvarint()}
				}
			}
			q.restoreMsg(m)
		}
		if version == snapshotVersion {
			for k := r.uvarint(); k > 0 && r.err == nil; k-- {
				key, s := r.string(), seenKey{id: r.uvarint()}
				copy(s.sum[:], r.bytes(32))
				s.at = r.varint()
				q.keys[key] = s
				q.keyOrder = append(q.keyOrder, keyAt{key: key, at: s.at})
			}
		}
		queues[q.name] = q
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, r.err)
	}
	f.queues, f.now = queues, now
	return nil
}

// restoreMsg files a restored message by its state.
func (q *queue) restoreMsg(m *msg) {
	q.msgs[m.id] = m
	switch m.state {
	case stateLeased:
		q.leasedN++
		heap.Push(&q.timers, timer{at: m.at, id: m.id})
	case stateDelayed:
		q.delayedN++
		heap.Push(&q.timers, timer{at: m.at, id: m.id})
	default:
		heap.Push(&q.ready, m.id)
	}
}

// reader decodes fields, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errors.New("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = errors.New("truncated")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) string() string {
	if r.err != nil {
		return ""
	}
	s, rest, err := readString(r.b)
	if err != nil {
		r.err = err
		return ""
	}
	r.b = rest
	return s
}
