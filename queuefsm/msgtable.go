package queuefsm

import (
	"iter"
	"slices"
	"sort"
)

const (
	// chunkSize is how many slots a chunk of a msgTable holds at most.
	chunkSize = 4096
	// maxSpare is the most slots a table keeps for reuse once empty.
	maxSpare = 256
)

// msgTable holds a queue's messages in id order, in chunks of up to
// chunkSize slots. Ids are handed out in increasing order, so new
// messages append to the last chunk; a lookup is two binary searches. A
// removed message leaves a hole, trimmed at once at the front of its
// chunk (where FIFO traffic removes) and squeezed out elsewhere when a
// chunk's holes outnumber its messages; an empty chunk is dropped.
//
// Chunks are copied on write after a shared view (see view), so a view
// costs one pointer per chunk: a million messages are 245 pointers.
type msgTable struct {
	chunks []*chunk
	n      int    // messages, i.e. slots that are not holes
	epoch  uint64 // bumped by each shared view; older chunks are read-only
	// spare is the last small chunk dropped, kept for the next add to an
	// empty table: a shallow queue that drains and fills again allocates
	// nothing. No view holds it (it was owned when it left the table).
	spare *chunk
}

type chunk struct {
	slots []slot // the first is never a hole
	n     int
	epoch uint64 // the table's epoch when this chunk was made
}

type slot struct {
	id uint64
	m  *msg // nil: a hole
}

// tableView is the messages of a table at one moment, in id order, holes
// included.
type tableView []*chunk

func (v tableView) each(fn func(m *msg)) {
	for _, c := range v {
		for _, s := range c.slots {
			if s.m != nil {
				fn(s.m)
			}
		}
	}
}

func (t *msgTable) len() int { return t.n }

// find returns where the message with id is stored: its chunk and slot;
// ok is false when it is not stored (a hole counts as not stored).
func (t *msgTable) find(id uint64) (ci, si int, ok bool) {
	ci = sort.Search(len(t.chunks), func(i int) bool { return t.chunks[i].slots[0].id > id }) - 1
	if ci < 0 {
		return 0, 0, false
	}
	ss := t.chunks[ci].slots
	si = sort.Search(len(ss), func(i int) bool { return ss[i].id >= id })
	return ci, si, si < len(ss) && ss[si].id == id && ss[si].m != nil
}

// ascend yields the stored messages from id on, in id order. The table
// must not change while it runs.
func (t *msgTable) ascend(id uint64) iter.Seq[*msg] {
	return func(yield func(*msg) bool) {
		ci, si, _ := t.find(id) // 0, 0 when id is below every chunk
		for ; ci < len(t.chunks); ci, si = ci+1, 0 {
			for _, s := range t.chunks[ci].slots[si:] {
				if s.m != nil && !yield(s.m) {
					return
				}
			}
		}
	}
}

// get returns the message with id, or nil.
func (t *msgTable) get(id uint64) *msg {
	if ci, si, ok := t.find(id); ok {
		return t.chunks[ci].slots[si].m
	}
	return nil
}

// own returns chunk ci fit to be changed: a chunk a shared view may hold
// is replaced by a copy, once.
func (t *msgTable) own(ci int) *chunk {
	c := t.chunks[ci]
	if c.epoch == t.epoch {
		return c
	}
	c = &chunk{slots: slices.Clone(c.slots), n: c.n, epoch: t.epoch}
	t.chunks[ci] = c
	return c
}

// add stores a message whose id is above every id stored before.
func (t *msgTable) add(m *msg) {
	k := len(t.chunks)
	if k > 0 {
		last := t.chunks[k-1]
		if last.slots[len(last.slots)-1].id >= m.id {
			panic("queuefsm: message ids out of order")
		}
		if len(last.slots) < chunkSize {
			c := t.own(k - 1)
			c.slots = append(c.slots, slot{id: m.id, m: m})
			c.n++
			t.n++
			return
		}
	}
	c := t.spare
	if c == nil {
		c = &chunk{}
	}
	t.spare = nil
	*c = chunk{slots: append(c.slots[:0], slot{id: m.id, m: m}), n: 1, epoch: t.epoch}
	t.chunks = append(t.chunks, c)
	t.n++
}

// replace swaps the stored record of m.id for m.
func (t *msgTable) replace(m *msg) {
	ci, si, ok := t.find(m.id)
	if !ok {
		panic("queuefsm: replacing a message that is not stored")
	}
	t.own(ci).slots[si].m = m
}

// remove deletes the message with id, if stored.
func (t *msgTable) remove(id uint64) {
	ci, si, ok := t.find(id)
	if !ok {
		return
	}
	c := t.own(ci)
	c.slots[si].m = nil
	c.n--
	t.n--
	if c.n == 0 {
		t.chunks = slices.Delete(t.chunks, ci, ci+1)
		if cap(c.slots) <= maxSpare {
			t.spare = c
		}
		return
	}
	k := 0
	for c.slots[k].m == nil {
		k++
	}
	c.slots = c.slots[k:]
	if holes := len(c.slots) - c.n; holes > 64 && holes > c.n {
		c.slots = slices.DeleteFunc(c.slots, func(s slot) bool { return s.m == nil })
	}
}

// view returns the messages as they are now. With share, the view stays
// as it is while the table changes (chunks are copied on write from then
// on); without, it is valid only until the next change.
func (t *msgTable) view(share bool) tableView {
	v := tableView(slices.Clone(t.chunks))
	if share {
		t.epoch++
	}
	return v
}

// first returns the stored message with the lowest id, or nil.
func (t *msgTable) first() *msg {
	if len(t.chunks) == 0 {
		return nil
	}
	return t.chunks[0].slots[0].m // the first slot of a chunk is never a hole
}
