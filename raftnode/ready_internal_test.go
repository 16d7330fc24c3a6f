package raftnode

import (
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

func ents(idx ...uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for _, i := range idx {
		out = append(out, &raftpb.Entry{Index: new(i), Term: new(uint64(1))})
	}
	return out
}

// Only committed entries below the first one a Ready carries to save are
// applied before its save; none with a snapshot or a conf change.
func TestDurablePrefix(t *testing.T) {
	cc := ents(5)
	cc[0].Type = raftpb.EntryConfChange.Enum()
	for _, c := range []struct {
		name string
		rd   raft.Ready
		want int
	}{
		{"no new entries: all saved before", raft.Ready{CommittedEntries: ents(4, 5, 6)}, 3},
		{"committed below the new", raft.Ready{CommittedEntries: ents(4, 5, 6), Entries: ents(6, 7)}, 2},
		{"all committed are new (a single voter)", raft.Ready{CommittedEntries: ents(6, 7), Entries: ents(6, 7)}, 0},
		{"a new leader overwrites the tail", raft.Ready{CommittedEntries: ents(3, 4), Entries: ents(4, 5)}, 1},
		{"a snapshot first", raft.Ready{CommittedEntries: ents(4), Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(3)), Term: new(uint64(1))}}}, 0},
		{"a conf change", raft.Ready{CommittedEntries: append(ents(4), cc...)}, 0},
		{"nothing committed", raft.Ready{Entries: ents(4)}, 0},
	} {
		if got := len(durablePrefix(c.rd)); got != c.want {
			t.Errorf("%s: %d entries early, want %d", c.name, got, c.want)
		}
	}
}

// A follower sends proposals and read requests for the leader before its
// save, in their order; answers to appends, votes and heartbeats, and its
// own vote requests, wait for the save. Ready's slice is not touched.
func TestSplitForwards(t *testing.T) {
	msg := func(ty raftpb.MessageType, to uint64) *raftpb.Message {
		return &raftpb.Message{Type: ty.Enum(), To: new(to)}
	}
	prop1, prop2 := msg(raftpb.MsgProp, 1), msg(raftpb.MsgProp, 2)
	read := msg(raftpb.MsgReadIndex, 1)
	resp, vote, hb := msg(raftpb.MsgAppResp, 1), msg(raftpb.MsgVote, 2), msg(raftpb.MsgHeartbeatResp, 1)
	vresp, prevote := msg(raftpb.MsgVoteResp, 3), msg(raftpb.MsgPreVote, 3)
	for _, c := range []struct {
		name           string
		msgs           []*raftpb.Message
		forwards, rest []*raftpb.Message
	}{
		{"none", nil, nil, nil},
		{"only answers", []*raftpb.Message{resp, hb}, nil, []*raftpb.Message{resp, hb}},
		{"only forwards", []*raftpb.Message{prop1, read}, []*raftpb.Message{prop1, read}, nil},
		{"mixed, order kept", []*raftpb.Message{resp, prop1, vote, read, prop2, hb, vresp, prevote},
			[]*raftpb.Message{prop1, read, prop2}, []*raftpb.Message{resp, vote, hb, vresp, prevote}},
	} {
		before := append([]*raftpb.Message(nil), c.msgs...)
		f, r := splitForwards(c.msgs)
		if !samePtrs(f, c.forwards) || !samePtrs(r, c.rest) {
			t.Errorf("%s: forwards %v rest %v, want %v and %v", c.name, msgTypes(f), msgTypes(r), msgTypes(c.forwards), msgTypes(c.rest))
		}
		if !samePtrs(c.msgs, before) {
			t.Errorf("%s: the Ready's slice changed", c.name)
		}
	}
}

func samePtrs(a, b []*raftpb.Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func msgTypes(ms []*raftpb.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.GetType().String())
	}
	return out
}
