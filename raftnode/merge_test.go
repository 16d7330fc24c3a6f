package raftnode_test

import (
	"fmt"
	"sync"
	"testing"
)

// Writes sent to followers concurrently are merged by the leader into its
// own groups (one stream of entries for the cluster, not one per node),
// and every caller still gets its own result: 200 enqueues through the two
// followers each answer a distinct id, every message is stored once, and
// the replicas agree.
func TestLeaderMergesForwardedGroups(t *testing.T) {
	c := newCluster(t, 3, 100000)
	lead := c.leader()
	var followers []int
	for i := range c.members {
		if i != lead {
			followers = append(followers, i)
		}
	}
	before := c.members[lead].node.Counters()
	const writers, each = 20, 10
	ids := make(chan uint64, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := c.members[followers[w%2]].node
			for i := range each {
				ids <- enqueue(t, n, "jobs", fmt.Sprintf("w%d-%d", w, i))
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[uint64]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("id %d answered twice", id)
		}
		seen[id] = true
	}
	after := c.members[lead].node.Counters()
	if after.MergedForwards == before.MergedForwards {
		t.Fatal("the leader merged no forwarded group: each follower's group became an entry of its own")
	}
	bodies := map[string]bool{}
	for range writers * each {
		r := dequeue(t, c.members[lead].node, "jobs")
		if !r.Found || bodies[string(r.Message.Body)] {
			t.Fatalf("dequeue: %+v (seen before: %v)", r, r.Found)
		}
		bodies[string(r.Message.Body)] = true
	}
	if r := dequeue(t, c.members[lead].node, "jobs"); r.Found {
		t.Fatalf("an extra message %q", r.Message.Body)
	}
	c.converged()
	st := c.members[lead].node.Counters()
	t.Logf("leader merged %d forwarded groups (%d commands)", st.MergedForwards-before.MergedForwards, st.MergedCommands-before.MergedCommands)
}
