package queuefsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// snapshotVersion is the first byte of every snapshot. Restore refuses other
// versions; a future format bumps it and keeps a reader for the old one.
const snapshotVersion = 1

// ErrBadSnapshot reports snapshot bytes that cannot be restored.
var ErrBadSnapshot = errors.New("queuefsm: malformed snapshot")

// Snapshot encodes the whole state. Queues are written in name order, so two
// equal states always encode to equal bytes.
func (f *FSM) Snapshot() ([]byte, error) {
	b := []byte{snapshotVersion}
	b = binary.AppendUvarint(b, uint64(len(f.queues)))
	for _, name := range f.names() {
		q := f.queues[name]
		b = appendString(b, name)
		b = binary.AppendUvarint(b, q.lastID)
		items := q.items()
		b = binary.AppendUvarint(b, uint64(len(items)))
		for _, m := range items {
			b = binary.AppendUvarint(b, m.ID)
			b = appendString(b, m.ContentType)
			b = appendString(b, string(m.Body))
		}
	}
	return b, nil
}

// Restore replaces the state with the one encoded in data. On error the
// state is unchanged.
func (f *FSM) Restore(data []byte) error {
	r := reader{b: data}
	if v := r.byte(); v != snapshotVersion {
		return fmt.Errorf("%w: version %d", ErrBadSnapshot, v)
	}
	queues := make(map[string]*queue)
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		name := r.string()
		q := &queue{lastID: r.uvarint()}
		count := r.uvarint()
		if count > uint64(len(r.b)) { // each message takes at least one byte
			return fmt.Errorf("%w: queue %q claims %d messages", ErrBadSnapshot, name, count)
		}
		q.msgs = make([]Message, 0, count)
		for ; count > 0 && r.err == nil; count-- {
			q.msgs = append(q.msgs, Message{ID: r.uvarint(), ContentType: r.string(), Body: []byte(r.string())})
		}
		queues[name] = q
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, r.err)
	}
	f.queues = queues
	return nil
}

// reader decodes snapshot fields, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.err = errors.New("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
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
