package queuefsm

// Ready is how many messages of queue are ready to be taken now (0 for a
// queue never used). Messages due to be dead-lettered at their next turn
// count, as a take is what moves them.
func (f *FSM) Ready(queue string) int {
	q := f.queues[queue]
	if q == nil {
		return 0
	}
	return q.msgs.len() - q.leasedN - q.delayedN
}
