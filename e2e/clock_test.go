package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// leaseTTL is the ttl of the leases below; early is how much sooner than
// it a lease may end without counting as cut short (cluster time may run
// ahead of real time by the time one proposal takes to commit, per node
// start).
const (
	leaseTTL = 3 * time.Second
	early    = 250 * time.Millisecond
)

// A node whose clock runs ten minutes fast neither shortens leases taken
// through the others nor its own: its stamps move the state machine's
// clock by the time that passes, not by where they stand. The expiry it
// reports is on its own wall clock.
func TestFastNodeClockDoesNotShortenLeases(t *testing.T) {
	c := startCluster(t, 3)
	n1, n2, n3 := c.procs[0], c.procs[1], c.procs[2]
	mustEnqueue(t, n1, "held", "first") // the clock is set by correct clocks
	// Node 3 restarts with its clock ten minutes ahead (the harness's nodes
	// inherit this process's environment).
	c.kill(2)
	t.Setenv("RAFTQ_TEST_CLOCK_OFFSET", "10m")
	c.start(2)
	waitFor(t, func() bool { _, err := enqueue(n3, "traffic", "warm-up"); return err == nil }, "node 3 to take writes")

	// A lease through node 1 holds while node 3's traffic goes on.
	asked := time.Now()
	a, ok := leaseMsg(t, n1, "held", "3s")
	if !ok || string(a.body) != "first" {
		t.Fatalf("lease through node 1: %d %q", a.status, a.body)
	}
	checkExpiresHeader(t, a, asked, time.Now())
	traffic(t, n3, asked.Add(leaseTTL/3))
	if !checkHeld(t, []*proc{n1, n2, n3}, "held", asked) {
		return
	}
	r, err := do(http.MethodDelete, fmt.Sprintf("%s/queues/held/messages/%s?lease=%s", n1.api, a.header.Get("Message-Id"), a.header.Get("Lease-Token")), "", nil)
	if err != nil || r.status != http.StatusNoContent {
		if time.Since(asked) < leaseTTL-early {
			t.Fatalf("ack %v after the lease: %d %s %v", time.Since(asked), r.status, r.body, err)
		}
		t.Logf("ack %v after a %v lease: %d; too slow to tell", time.Since(asked), leaseTTL, r.status)
		return
	}

	// A lease through node 3 holds as well, and comes back after its ttl.
	mustEnqueue(t, n1, "held", "second")
	asked = time.Now()
	b, ok := leaseMsg(t, n3, "held", "3s")
	if !ok || string(b.body) != "second" {
		t.Fatalf("lease through node 3: %d %q", b.status, b.body)
	}
	checkExpiresHeader(t, b, asked, time.Now())
	traffic(t, n3, asked.Add(leaseTTL/3))
	if !checkHeld(t, []*proc{n1, n2, n3}, "held", asked) {
		return
	}
	var again response
	waitFor(t, func() bool {
		again, ok = leaseMsg(t, n2, "held", "30s")
		return ok
	}, "the lease taken through node 3 to expire")
	if since := time.Since(asked); since < leaseTTL-early {
		t.Fatalf("the lease through node 3 ended %v after it was asked for; its ttl is %v", since, leaseTTL)
	}
	if string(again.body) != "second" || again.header.Get("Delivery-Count") != "2" {
		t.Fatalf("redelivery: %q %v", again.body, again.header)
	}
}

// traffic enqueues through p until the given time, so that p's stamps are
// applied meanwhile.
func traffic(t *testing.T, p *proc, until time.Time) {
	t.Helper()
	sent := 0
	for i := 0; time.Now().Before(until) || sent == 0; i++ {
		if _, err := enqueue(p, "traffic", fmt.Sprint(i)); err == nil {
			sent++
		} else if time.Now().After(until.Add(30 * time.Second)) {
			t.Fatalf("node %d takes no writes: %v", p.id, err)
		}
	}
	t.Logf("%d enqueues through node %d", sent, p.id)
}

// checkHeld checks that no node hands out queue's head, leased when asked.
// A check answered later than the ttl after asked proves nothing: it is
// logged and checkHeld returns false.
func checkHeld(t *testing.T, nodes []*proc, queue string, asked time.Time) bool {
	t.Helper()
	for _, p := range nodes {
		r, ok := leaseMsg(t, p, queue, "30s")
		since := time.Since(asked)
		switch {
		case ok && since < leaseTTL-early:
			t.Fatalf("node %d handed out %q %v after a %v lease was asked for", p.id, r.body, since, leaseTTL)
		case ok || since >= leaseTTL-early:
			t.Logf("checked %v after a %v lease was asked for: too slow to tell", since, leaseTTL)
			return false
		}
	}
	return true
}

// checkExpiresHeader checks that a lease asked for at asked and answered
// at answered says it expires its ttl after the answering node's now, on
// that node's wall clock (which is this machine's: the offset only moves
// the node's stamps).
func checkExpiresHeader(t *testing.T, r response, asked, answered time.Time) {
	t.Helper()
	exp, err := time.Parse(time.RFC3339Nano, r.header.Get("Lease-Expires"))
	if err != nil {
		t.Fatalf("Lease-Expires: %v", err)
	}
	if lo, hi := asked.Add(leaseTTL-2*time.Second), answered.Add(leaseTTL+2*time.Second); exp.Before(lo) || exp.After(hi) {
		t.Fatalf("Lease-Expires %v, want within 2s of %v to %v", exp, asked.Add(leaseTTL), answered.Add(leaseTTL))
	}
}
