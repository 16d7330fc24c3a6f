package queuefsm

// Ready is how many messages of queue a take would find ready now (0 for
// a queue never used). It changes nothing: expiry is lazy (a queue's
// leases and delays are acted on when a command touches it, or at a
// tick), so leased or delayed messages whose time has come by the clock
// count too. Messages due to be dead-lettered at their next turn count,
// as a take is what moves them.
func (f *FSM) Ready(queue string) int {
	q := f.queues[queue]
	if q == nil {
		return 0
	}
	return q.msgs.len() - q.leasedN - q.delayedN + q.due(f.now)
}

// due counts the leased and delayed messages whose timer has passed at
// now but has not been acted on. It walks only the heap's entries at or
// before now (a heap's children are never earlier than their parent).
func (q *queue) due(now int64) int {
	var seen map[uint64]bool // a message may have several current timers (an extend to the same time)
	n := 0
	var walk func(i int)
	walk = func(i int) {
		if i >= len(q.timers) || q.timers[i].at > now {
			return
		}
		t := q.timers[i]
		if m := q.msgs.get(t.id); m != nil && m.at == t.at && m.state != stateReady && !seen[t.id] {
			if seen == nil {
				seen = map[uint64]bool{}
			}
			seen[t.id] = true
			n++
		}
		walk(2*i + 1)
		walk(2*i + 2)
	}
	walk(0)
	return n
}
