package raftnode

import (
	"context"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// transportRaft is the face Node shows to rafthttp (rafthttp.Raft).
type transportRaft Node

func (t *transportRaft) node() *Node { return (*Node)(t) }

// Process steps a message received from a peer, once raft is running.
func (t *transportRaft) Process(ctx context.Context, m *raftpb.Message) error {
	n := t.node()
	select {
	case <-n.started:
	case <-n.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	return n.raft.Step(ctx, m)
}

// IsIDRemoved makes rafthttp answer 410 Gone to removed members.
func (t *transportRaft) IsIDRemoved(id uint64) bool {
	n := t.node()
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.members.removed[id]
}

func (t *transportRaft) ReportUnreachable(id uint64) {
	if n := t.node(); n.isRunning() {
		n.raft.ReportUnreachable(id)
	}
}

func (t *transportRaft) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	if n := t.node(); n.isRunning() {
		n.raft.ReportSnapshot(id, status)
	}
}

func (n *Node) isRunning() bool {
	select {
	case <-n.started:
		return true
	default:
		return false
	}
}
