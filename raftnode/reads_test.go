package raftnode_test

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Reads that arrive together share ReadIndex rounds (one heartbeat round
// of the leader's serves many), and each still sees every write
// acknowledged before it was called.
func TestReadBarriersShareRounds(t *testing.T) {
	c := newCluster(t, 3, 1000)
	l := c.leader()
	f := (l + 1) % 3
	const reads = 200
	for round := range 3 {
		enqueue(t, c.members[l].node, "q", "m")
		before := c.members[f].node.Counters().ReadRounds
		start := make(chan struct{})
		errs := make(chan error, reads)
		var wg sync.WaitGroup
		for range reads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if err := c.members[f].node.ReadBarrier(ctx); err != nil {
					errs <- err
					return
				}
				var depth int
				c.members[f].node.View(func() {
					for _, q := range c.members[f].fsm.Queues() {
						depth += q.Depth
					}
				})
				if depth != round+1 {
					t.Errorf("a read after %d acknowledged writes saw a depth of %d", round+1, depth)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("read barrier: %v", err)
		}
		if used := c.members[f].node.Counters().ReadRounds - before; used == 0 || used > reads/2 {
			t.Fatalf("%d concurrent read barriers used %d ReadIndex rounds", reads, used)
		}
	}
}
