package wal

import (
	"bytes"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// BenchmarkSave: one Ready's worth of entries (1 or 64 entries of 256
// bytes) with a HardState, fsynced, as the Ready loop saves them.
func BenchmarkSave(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(map[int]string{1: "1entry", 64: "64entries"}[n], func(b *testing.B) {
			s, err := Open(zap.NewNop(), b.TempDir(), 1, clusterID(testClusterID))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := bytes.Repeat([]byte("x"), 256)
			var idx uint64
			b.SetBytes(int64(256 * n))
			for b.Loop() {
				ents := make([]*raftpb.Entry, n)
				for i := range ents {
					idx++
					ents[i] = &raftpb.Entry{Term: new(uint64(1)), Index: new(idx), Type: raftpb.EntryNormal.Enum(), Data: data}
				}
				if err := s.Save(&raftpb.HardState{Term: new(uint64(1)), Commit: new(idx)}, ents, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
