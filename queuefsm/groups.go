package queuefsm

import (
	"container/heap"
	"slices"
)

// Message groups, as SQS FIFO queues and JMS message groups have them: the
// messages of one group are delivered in id order, one lease at a time.
// While a message of a group is leased, or delayed (by its enqueue or by a
// release), no take returns another of that group, so none overtakes an
// older one; the other groups and the messages of no group go on. A pop
// (an at-most-once take) does not hold its group.
//
// A queue files the ready messages of a group in the group's own heap, and
// the groups that may be taken from (none of their messages leased, one
// ready at least) in avail, by their oldest ready id: a take compares the
// oldest ungrouped ready message with avail's first group and takes the
// older, so a queue without groups works exactly as before.
type group struct {
	name  string
	ready idHeap // ids of ready messages; may hold stale ids (see clean)
	held  int    // leased and delayed messages of the group
	at    int    // index in the queue's avail, -1 when not in it
}

// groupHeap is a queue's available groups, by their oldest ready id.
type groupHeap []*group

func (h groupHeap) Len() int           { return len(h) }
func (h groupHeap) Less(i, j int) bool { return h[i].ready[0] < h[j].ready[0] }
func (h groupHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *groupHeap) Push(x any) {
	g := x.(*group)
	g.at = len(*h)
	*h = append(*h, g)
}
func (h *groupHeap) Pop() any {
	old := *h
	g := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	g.at = -1
	return g
}

func (m *msg) group() string {
	if m.meta == nil {
		return ""
	}
	return m.meta.group
}

// groupOf returns the queue's group named, made if need be.
func (q *queue) groupOf(name string) *group {
	g := q.groups[name]
	if g == nil {
		if q.groups == nil {
			q.groups = map[string]*group{}
		}
		g = &group{name: name, at: -1}
		q.groups[name] = g
	}
	return g
}

// refresh puts g in avail or takes it out, as its state says, and forgets
// a group with nothing left.
func (q *queue) refresh(g *group) {
	want := g.held == 0 && len(g.ready) > 0
	switch {
	case want && g.at < 0:
		heap.Push(&q.avail, g)
	case want:
		heap.Fix(&q.avail, g.at)
	case g.at >= 0:
		heap.Remove(&q.avail, g.at)
	}
	if g.held == 0 && len(g.ready) == 0 {
		delete(q.groups, g.name)
	}
}

// fileReady puts a message that became ready in line: its group's, or the
// queue's own.
func (q *queue) fileReady(m *msg) {
	name := m.group()
	if name == "" {
		heap.Push(&q.ready, m.id)
		return
	}
	g := q.groupOf(name)
	heap.Push(&g.ready, m.id)
	q.groupedReady++
	q.refresh(g)
}

// nextID returns the id the next take would look at, and the group it
// sits in (nil: the queue's own line); ok is false when both are empty.
func (q *queue) nextID() (id uint64, g *group, ok bool) {
	if len(q.avail) > 0 && q.avail[0].ready[0] < q.ready.min() {
		g = q.avail[0]
		return g.ready[0], g, true
	}
	return q.ready.min(), nil, len(q.ready) > 0
}

// popNext removes the next id from its line and returns the message it
// names, nil when it is stale (no longer stored, or no longer ready).
func (q *queue) popNext() (m *msg, ok bool) {
	id, g, ok := q.nextID()
	if !ok {
		return nil, false
	}
	if g == nil {
		heap.Pop(&q.ready)
	} else {
		heap.Pop(&g.ready)
		q.clean(g)
	}
	m = q.msgs.get(id)
	if m == nil || m.state != stateReady {
		return nil, true
	}
	if g != nil {
		q.groupedReady--
	}
	return m, true
}

// leaseStarted holds m's group while m is leased or delayed.
func (q *queue) leaseStarted(m *msg) {
	if name := m.group(); name != "" {
		g := q.groupOf(name)
		g.held++
		q.refresh(g)
	}
}

// leaseEnded frees m's group from m's lease or delay (an ack, a release,
// an expiry, a drop): called while m is still leased or delayed.
func (q *queue) leaseEnded(m *msg) {
	if name := m.group(); name != "" {
		if g := q.groups[name]; g != nil && g.held > 0 {
			g.held--
			q.refresh(g)
		}
	}
}

// unfileOldest takes m, the ready message of lowest id in the queue, out
// of its line, where it is first.
func (q *queue) unfileOldest(m *msg) {
	line := &q.ready
	g := q.groups[m.group()]
	if g != nil {
		line = &g.ready
	}
	i := 0 // the oldest ready id is first in its line; should it not be, it is found
	for i < len(*line) && (*line)[i] != m.id {
		i++
	}
	if i == len(*line) {
		return
	}
	heap.Remove(line, i)
	if g != nil {
		q.groupedReady--
		q.refresh(g)
	}
}

// clean pops ids of messages no longer ready off g's heap (none are
// expected: every path that ends a ready message takes it out of its
// line), so that a group in avail has a ready message first.
func (q *queue) clean(g *group) {
	for len(g.ready) > 0 {
		if m := q.msgs.get(g.ready[0]); m != nil && m.state == stateReady {
			break
		}
		heap.Pop(&g.ready)
	}
	q.refresh(g)
}

// takable is how many takes would find a message now, before leases and
// delays due are acted on: every ready message of no group, and one per
// available group (a lease holds its group).
func (q *queue) takable() int {
	return q.msgs.len() - q.leasedN - q.delayedN - q.groupedReady + len(q.avail)
}

// readyMin is the lowest ready id, in any line (the largest id if none).
func (q *queue) readyMin() uint64 {
	id := q.ready.min()
	for _, g := range q.groups {
		id = min(id, g.ready.min())
	}
	return id
}

// readyIDs returns the lowest max ready ids, in any line, ascending (a
// group's messages count whether or not the group is held by a lease).
// Each line gives its lowest ids until it has given max, or until they
// pass the max-th lowest of the lines before it.
func (q *queue) readyIDs(max int) []uint64 {
	var out []uint64
	take := func(h idHeap) {
		bound, n := ^uint64(0), 0
		if len(out) >= max {
			bound = out[max-1]
		}
		for id := range h.ascending {
			if id > bound || n == max {
				return
			}
			out, n = append(out, id), n+1
		}
	}
	take(q.ready)
	for _, g := range q.groups {
		take(g.ready)
		slices.Sort(out)
		out = out[:min(len(out), max)]
	}
	return out[:min(len(out), max)]
}

// nextInGroup takes the next ready message of g, which the caller's lease
// holds, dead-lettering as nextReady does; nil when g has none ready.
func (q *queue) nextInGroup(f *FSM, g *group) *msg {
	for len(g.ready) > 0 {
		m := q.msgs.get(heap.Pop(&g.ready).(uint64))
		if m == nil || m.state != stateReady {
			continue
		}
		q.groupedReady--
		q.refresh(g)
		if q.exhausted(m) {
			q.deadLetter(f, m)
			continue
		}
		return m
	}
	q.refresh(g)
	return nil
}
