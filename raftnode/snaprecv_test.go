package raftnode_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A lagging node whose snap dir already holds a wrong state file under the
// name of the snapshot it is sent (rafthttp keeps a file already there)
// refuses that snapshot before raft takes it, and catches up from the copy
// the leader sends again, without stopping. Before, raft stepped it and
// the node failed in Save.
func TestReceivedSnapshotWithAWrongStateFileIsFetchedAgain(t *testing.T) {
	c := newCluster(t, 3, 20)
	l := c.leader()
	lag := (l + 1) % 3
	c.stop(lag)
	for i := range 200 {
		enqueue(t, c.members[l].node, "q", fmt.Sprint(i))
	}
	// Wait for the leader's last snapshot: once fewer than 20 entries are
	// past it, no other is taken without new entries.
	mem := c.members[l].store.Storage()
	deadline := time.Now().Add(20 * time.Second)
	var index uint64
	for {
		snap, err := mem.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		index = snap.GetMetadata().GetIndex()
		if last, _ := mem.LastIndex(); index+20 > last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader's snapshot stays at %d", index)
		}
		time.Sleep(20 * time.Millisecond)
	}
	bad := filepath.Join(c.dirs[lag], "snap", fmt.Sprintf("%016x.snap.db", index))
	if err := os.WriteFile(bad, []byte("not the state"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(lag)
	c.converged() // and the cleanup's stop checks that Run returned no error
	select {
	case err := <-c.members[lag].done:
		t.Fatalf("lagging node stopped: %v", err)
	default:
	}
	if _, err := os.Stat(bad + ".broken"); err != nil {
		t.Fatalf("the wrong state file was not set aside: %v", err)
	}
}
