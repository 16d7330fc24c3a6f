package queuefsm

import (
	"slices"
	"sort"
)

// msgTable holds a queue's messages in id order. Ids are handed out in
// increasing order, so new messages append; a lookup is a binary search.
// A removed message leaves a hole, trimmed at once at the front (where
// FIFO traffic removes) and squeezed out elsewhere when holes outnumber
// messages. In id order, a copy of the table is already a sorted view of
// the queue, which is what Capture needs, for one memory move.
type msgTable struct {
	slots []slot
	n     int // messages, i.e. slots that are not holes
}

type slot struct {
	id uint64
	m  *msg // nil: a hole
}

func (t *msgTable) len() int { return t.n }

func (t *msgTable) find(id uint64) (int, bool) {
	i := sort.Search(len(t.slots), func(i int) bool { return t.slots[i].id >= id })
	return i, i < len(t.slots) && t.slots[i].id == id
}

// get returns the message with id, or nil.
func (t *msgTable) get(id uint64) *msg {
	if i, ok := t.find(id); ok {
		return t.slots[i].m
	}
	return nil
}

// add stores a message whose id is above every id stored before.
func (t *msgTable) add(m *msg) {
	if k := len(t.slots); k > 0 && t.slots[k-1].id >= m.id {
		panic("queuefsm: message ids out of order")
	}
	t.slots = append(t.slots, slot{id: m.id, m: m})
	t.n++
}

// replace swaps the stored record of m.id for m.
func (t *msgTable) replace(m *msg) {
	i, ok := t.find(m.id)
	if !ok || t.slots[i].m == nil {
		panic("queuefsm: replacing a message that is not stored")
	}
	t.slots[i].m = m
}

// remove deletes the message with id, if stored.
func (t *msgTable) remove(id uint64) {
	i, ok := t.find(id)
	if !ok || t.slots[i].m == nil {
		return
	}
	t.slots[i].m = nil
	t.n--
	k := 0
	for k < len(t.slots) && t.slots[k].m == nil {
		k++
	}
	t.slots = t.slots[k:]
	if holes := len(t.slots) - t.n; holes > 64 && holes > t.n {
		t.slots = slices.DeleteFunc(t.slots, func(s slot) bool { return s.m == nil })
	}
}

// view copies the messages, in id order, holes included.
func (t *msgTable) view() []slot { return slices.Clone(t.slots) }
