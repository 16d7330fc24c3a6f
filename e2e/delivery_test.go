package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// leaseMsg leases from queue on node p: ok=false on 204.
func leaseMsg(t *testing.T, p *proc, queue, ttl string) (r response, ok bool) {
	t.Helper()
	r, err := do(http.MethodPost, fmt.Sprintf("%s/queues/%s/leases?ttl=%s", p.api, queue, ttl), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	switch r.status {
	case http.StatusOK:
		return r, true
	case http.StatusNoContent:
		return r, false
	}
	t.Fatalf("lease: %d %s", r.status, r.body)
	return r, false
}

// A consumer that leases and never acks sees the message again after the
// ttl, with Delivery-Count 2; its late ack is refused with 409.
func TestUnackedLeaseIsRedelivered(t *testing.T) {
	c := startCluster(t, 3)
	a, b := c.procs[0], c.procs[1]
	mustEnqueue(t, a, "jobs", "work-1")
	first, ok := leaseMsg(t, a, "jobs", "1s")
	if !ok || string(first.body) != "work-1" || first.header.Get("Delivery-Count") != "1" {
		t.Fatalf("first lease: %d %q %v", first.status, first.body, first.header)
	}
	id, token := first.header.Get("Message-Id"), first.header.Get("Lease-Token")
	if _, err := time.Parse(time.RFC3339Nano, first.header.Get("Lease-Expires")); err != nil || token == "" {
		t.Fatalf("lease headers: %v", first.header)
	}
	if _, ok := leaseMsg(t, b, "jobs", "1s"); ok {
		t.Fatal("a leased message was handed out twice")
	}
	var again response
	waitFor(t, func() bool {
		var ok bool
		again, ok = leaseMsg(t, b, "jobs", "30s")
		return ok
	}, "the expired lease to be redelivered")
	if string(again.body) != "work-1" || again.header.Get("Delivery-Count") != "2" {
		t.Fatalf("redelivery: %q %v", again.body, again.header)
	}
	r, err := do(http.MethodDelete, fmt.Sprintf("%s/queues/jobs/messages/%s?lease=%s", a.api, id, token), "", nil)
	if err != nil || r.status != http.StatusConflict {
		t.Fatalf("ack with the expired token: %d %s %v, want 409", r.status, r.body, err)
	}
	r, err = do(http.MethodDelete, fmt.Sprintf("%s/queues/jobs/messages/%s?lease=%s", c.procs[2].api, id, again.header.Get("Lease-Token")), "", nil)
	if err != nil || r.status != http.StatusNoContent {
		t.Fatalf("ack: %d %s %v", r.status, r.body, err)
	}
	if _, ok := leaseMsg(t, a, "jobs", "1s"); ok {
		t.Fatal("an acked message came back")
	}
}

func TestDeadLetterAfterMaxDeliveries(t *testing.T) {
	c := startCluster(t, 3)
	p := c.procs[0]
	if r := mgmt(t, http.MethodPut, p.api+"/queues/jobs/config", `{"max_deliveries":2,"dead_letter_queue":"jobs.dlq"}`); r.status != http.StatusOK {
		t.Fatalf("config: %d %s", r.status, r.body)
	}
	mustEnqueue(t, p, "jobs", "poison")
	for i := range 2 {
		r, ok := leaseMsg(t, c.procs[i], "jobs", "1s")
		if !ok {
			t.Fatalf("delivery %d missing", i+1)
		}
		rel := fmt.Sprintf("%s/queues/jobs/messages/%s/release?lease=%s", p.api, r.header.Get("Message-Id"), r.header.Get("Lease-Token"))
		if r, err := do(http.MethodPost, rel, "", nil); err != nil || r.status != http.StatusNoContent {
			t.Fatalf("release: %d %s %v", r.status, r.body, err)
		}
	}
	if _, ok := leaseMsg(t, p, "jobs", "1s"); ok {
		t.Fatal("delivered a third time despite max_deliveries 2")
	}
	d, ok := leaseMsg(t, c.procs[2], "jobs.dlq", "10s")
	if !ok || string(d.body) != "poison" || d.header.Get("Dead-Letter-Origin-Queue") != "jobs" || d.header.Get("Dead-Letter-Deliveries") != "2" {
		t.Fatalf("dead letter: %q %v", d.body, d.header)
	}
}

// A producer retries one message with one Idempotency-Key until it is
// acknowledged, across a kill -9 of the leader: exactly one copy exists.
func TestIdempotentRetryAcrossLeaderKill(t *testing.T) {
	c := startCluster(t, 3, "--request-timeout", "2s")
	l := c.leader()
	var followers []*proc
	for i, p := range c.procs {
		if i != l {
			followers = append(followers, p)
		}
	}
	send := func(p *proc, key, body string) int {
		req, _ := http.NewRequest(http.MethodPost, p.api+"/queues/orders", strings.NewReader(body))
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Every order goes to the leader first: half of them acknowledged,
	// the other half in flight when the leader is killed (answers lost,
	// entries perhaps committed). The producer then retries every order
	// through the followers, as one that cannot tell which got through.
	const orders = 40
	for i := range orders / 2 {
		key := fmt.Sprintf("order-%d", i)
		if s := send(c.procs[l], key, key); s != http.StatusCreated {
			t.Fatalf("%s: %d", key, s)
		}
	}
	var wg sync.WaitGroup
	for i := orders / 2; i < orders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("order-%d", i)
			send(c.procs[l], key, key)
		}()
	}
	time.Sleep(5 * time.Millisecond)
	c.kill(l)
	wg.Wait()
	for i := range orders {
		key := fmt.Sprintf("order-%d", i)
		for try := 0; ; try++ {
			if s := send(followers[try%2], key, key); s == http.StatusCreated || s == http.StatusOK {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	got := drain(t, followers[0], "orders")
	seen := map[string]int{}
	for _, b := range got {
		seen[b]++
	}
	for i := range orders {
		if n := seen[fmt.Sprintf("order-%d", i)]; n != 1 {
			t.Errorf("order-%d stored %d times", i, n)
		}
	}
}

// A long poll on one node wakes when a message is enqueued on another.
func TestLongPollWakesOnEnqueueElsewhere(t *testing.T) {
	c := startCluster(t, 3)
	type result struct {
		r   response
		err error
		at  time.Duration
	}
	start := time.Now()
	done := make(chan result, 1)
	go func() {
		r, err := do(http.MethodGet, c.procs[0].api+"/queues/inbox?wait=20s", "", nil)
		done <- result{r, err, time.Since(start)}
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case res := <-done:
		t.Fatalf("the long poll returned before any enqueue: %d %s", res.r.status, res.r.body)
	default:
	}
	mustEnqueue(t, c.procs[2], "inbox", "hello")
	res := <-done
	if res.err != nil || res.r.status != http.StatusOK || string(res.r.body) != "hello" {
		t.Fatalf("long poll: %d %q %v", res.r.status, res.r.body, res.err)
	}
	if res.at > 10*time.Second {
		t.Fatalf("the long poll answered after %v, not on the enqueue", res.at)
	}
	// Many waiting consumers each get a different message.
	const waiters = 4
	got := make(chan string, waiters)
	for i := range waiters {
		go func() {
			r, err := do(http.MethodPost, c.procs[i%3].api+"/queues/fanout/leases?wait=20s&ttl=60s", "", nil)
			if err != nil || r.status != http.StatusOK {
				got <- fmt.Sprintf("error %d %v", r.status, err)
				return
			}
			got <- string(r.body)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	for i := range waiters {
		mustEnqueue(t, c.procs[(i+1)%3], "fanout", fmt.Sprint("m", i))
	}
	seen := map[string]bool{}
	for range waiters {
		b := <-got
		if seen[b] || !strings.HasPrefix(b, "m") {
			t.Fatalf("waiting consumers got %q (seen %v)", b, seen)
		}
		seen[b] = true
	}
	// With nothing coming, it answers 204 when the wait ends.
	r, err := do(http.MethodGet, c.procs[1].api+"/queues/inbox?wait=1s", "", nil)
	if err != nil || r.status != http.StatusNoContent {
		t.Fatalf("empty long poll: %d %v", r.status, err)
	}
}

func TestDeliveryBadInput(t *testing.T) {
	c := startCluster(t, 1)
	api := c.procs[0].api
	mustEnqueue(t, c.procs[0], "q", "x")
	for _, tc := range []struct {
		method, path string
		header       string
		status       int
	}{
		{http.MethodPost, "/queues/q/leases?ttl=500ms", "", http.StatusBadRequest},
		{http.MethodPost, "/queues/q/leases?ttl=13h", "", http.StatusBadRequest},
		{http.MethodPost, "/queues/q/leases?wait=61s", "", http.StatusBadRequest},
		{http.MethodGet, "/queues/q?wait=forever", "", http.StatusBadRequest},
		{http.MethodDelete, "/queues/q/messages/1", "", http.StatusBadRequest},
		{http.MethodDelete, "/queues/q/messages/x?lease=a", "", http.StatusBadRequest},
		{http.MethodDelete, "/queues/q/messages/9?lease=a", "", http.StatusNotFound},
		{http.MethodPost, "/queues/q/messages/1/release?lease=a&delay=13h", "", http.StatusBadRequest},
		{http.MethodPost, "/queues/q", "Delay: 13h", http.StatusBadRequest},
		{http.MethodPost, "/queues/q", "Idempotency-Key: " + strings.Repeat("k", 129), http.StatusBadRequest},
		{http.MethodPut, "/queues/q/config", "", http.StatusBadRequest},
		{http.MethodGet, "/queues/b%20d?wait=20s", "", http.StatusBadRequest},
		{http.MethodPost, "/queues/b%20d/leases?wait=20s", "", http.StatusBadRequest},
		{http.MethodGet, "/queues/.", "", http.StatusBadRequest},
		{http.MethodPut, "/queues/..", "", http.StatusBadRequest},
		{http.MethodPost, "/queues/%2E%2E/leases", "", http.StatusBadRequest},
		{http.MethodGet, "/queues/%2e?wait=1s", "", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(tc.method, api+tc.path, strings.NewReader("b"))
		if name, value, ok := strings.Cut(tc.header, ": "); ok {
			req.Header.Set(name, value)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s [%s]: %d, want %d", tc.method, tc.path, tc.header, resp.StatusCode, tc.status)
		}
	}
	// Nothing above changed the queue.
	if r, ok := leaseMsg(t, c.procs[0], "q", "5s"); !ok || string(r.body) != "x" || r.header.Get("Delivery-Count") != "1" {
		t.Fatalf("after bad input: %q %v", r.body, r.header)
	}
}
