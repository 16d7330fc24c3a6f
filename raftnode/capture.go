package raftnode

import "io"

// CaptureState takes a view of the state machine at the applied index it
// returns, holding the write lock only for StateMachine.Capture (cheap);
// write encodes that view and may run on any goroutine while applying goes
// on. For reads of the whole state (a hash) that must not stall the node.
func (n *Node) CaptureState() (applied uint64, write func(io.Writer) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.applied.Load(), n.sm.Capture()
}
