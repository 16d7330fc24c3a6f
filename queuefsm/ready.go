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
	return q.takable() + len(q.dueMsgs(f.now))
}

// NextDeadline is the earliest time (on the state machine's clock) at
// which something is due: a lease's or a delay's end, or an idempotency
// key leaving the dedupe window (keys are counted against the limits
// until they are forgotten). ok is false when nothing waits on the
// clock. A timer made stale by an ack or an extend may make it early,
// never late.
func (f *FSM) NextDeadline() (at int64, ok bool) {
	for _, q := range f.queues {
		if len(q.timers) > 0 && (!ok || q.timers[0].at < at) {
			at, ok = q.timers[0].at, true
		}
		if len(q.keyOrder) > 0 {
			if k := q.keyOrder[0].at + DedupeWindow; !ok || k < at {
				at, ok = k, true
			}
		}
		if m := q.msgs.first(); m != nil && q.settings.Retention > 0 {
			if e := m.expiresAt(q.settings.Retention); !ok || e < at {
				at, ok = e, true
			}
		}
	}
	return at, ok
}
