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
	return q.msgs.len() - q.leasedN - q.delayedN + len(q.dueMsgs(f.now))
}
