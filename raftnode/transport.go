package raftnode

import (
	"context"
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
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
	if m.GetType() == raftpb.MsgSnap {
		// raft takes a snapshot irrevocably: one whose state file (saved
		// by rafthttp just before) does not match is refused here, so the
		// leader reports a failure and sends it again, instead of this
		// node failing on it in Save.
		if err := n.store.CheckReceivedSnapshot(m.GetSnapshot()); err != nil {
			n.lg.Warn("refusing a received snapshot; the leader will send it again",
				zap.Uint64("from", m.GetFrom()), zap.Uint64("index", m.GetSnapshot().GetMetadata().GetIndex()), zap.Error(err))
			return fmt.Errorf("raftnode: received snapshot refused: %w", err)
		}
	}
	if n.mergeForwarded(m) {
		return nil
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
