package raftnode_test

import (
	"io"
	"testing"
)

// Writing a captured state (for /debug/state's hash) holds no lock: while
// the write is stuck, entries are still applied. Hashing under the node's
// read lock, as /debug/state did, stalled applying for the whole write.
func TestCaptureWritesOffTheLock(t *testing.T) {
	c := newCluster(t, 1, 1000)
	n := c.members[c.leader()].node
	enqueue(t, n, "q", "a")
	applied, write := n.CaptureState()
	if applied != n.Applied() {
		t.Fatalf("captured at %d, applied %d", applied, n.Applied())
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- write(pw) }() // stuck: nobody reads the pipe
	enqueue(t, n, "q", "b")           // fails the test after 10 s if applying waits
	pr.Close()
	if err := <-done; err == nil {
		t.Fatal("the write into a closed pipe succeeded")
	}
}
