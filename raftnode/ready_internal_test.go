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
