package raftnode

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/raftq/raftq/queuefsm"
	"github.com/raftq/raftq/wal"
)

// A committed conf change whose member context does not decode is a damaged
// log: the node stops with an error naming the entry and the member, and
// raft never applies the change (before, the member was added to raft's
// configuration with no peer, and the node went on).
func TestBadMemberContextStopsTheNode(t *testing.T) {
	urls := []string{"http://127.0.0.1:1"} // a single node sends nothing
	store, err := wal.Open(zap.NewNop(), t.TempDir(), 1, func() (uint64, error) { return 0x7e57, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	n, err := New(Config{ID: 1, Peers: urls, SnapshotCount: 1000, TickInterval: 10 * time.Millisecond,
		ElectionTicks: 10, Logger: zap.NewNop()}, store, queuefsm.New())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- n.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for n.lead.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: new(uint64(2)), Context: []byte("{not json")}
	if err := n.raft.ProposeConfChange(ctx, cc); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, errBadMemberContext) {
			t.Fatalf("Run returned %v, want a bad member context", err)
		}
		t.Logf("Run stopped with: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the node went on after committing an undecodable member context")
	}
	if slices.Contains(n.confState.GetLearners(), 2) || n.members.members[2] != nil {
		t.Fatalf("member 2 was applied: conf state %v", n.confState)
	}
}
