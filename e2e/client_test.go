package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	qc "github.com/raftq/raftq/client"
)

func apiURLs(c *cluster) []string {
	var out []string
	for _, p := range c.procs {
		out = append(out, p.api)
	}
	return out
}

func newClient(t *testing.T, eps []string, opts ...qc.Option) *qc.Client {
	t.Helper()
	cl, err := qc.New(eps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Every call of the Go client against three real nodes, with its typed
// errors.
func TestClientCalls(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	cl := newClient(t, apiURLs(c))
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	id, err := cl.Enqueue(ctx, "jobs", []byte("one"), qc.WithContentType("text/plain"), qc.WithGroup("g"),
		qc.WithAttributes(map[string]qc.Attribute{"n": {Type: "Number", Value: "1"}, "raw": {Type: "Binary", Value: "\x00\xff"}}))
	must(err)
	again, err := cl.Enqueue(ctx, "jobs", []byte("one"), qc.WithKey("k1"))
	must(err)
	if replay, err := cl.Enqueue(ctx, "jobs", []byte("one"), qc.WithKey("k1")); err != nil || replay != again {
		t.Fatalf("a send with the same key: %d %v, want %d", replay, err, again)
	}
	if _, err := cl.Enqueue(ctx, "jobs", []byte("other"), qc.WithKey("k1")); !errors.Is(err, qc.ErrKeyReused) {
		t.Fatalf("a key with another message: %v", err)
	}
	ids, err := cl.EnqueueBatch(ctx, "jobs", []qc.NewMessage{{Body: []byte("b1")}, {Body: []byte{0xff, 0}, Opts: []qc.SendOption{qc.WithDelay(time.Hour)}}})
	must(err)
	if len(ids) != 2 || ids[0] <= again {
		t.Fatalf("batch ids %v", ids)
	}
	st, err := cl.Stats(ctx, "jobs")
	must(err)
	if st.Depth != 3 || st.Delayed != 1 || st.Totals.Enqueued != 4 {
		t.Fatalf("stats %+v", st)
	}
	ps, err := cl.Peek(ctx, "jobs", 10)
	must(err)
	if len(ps) != 3 || string(ps[0].Body) != "one" || ps[0].ID != id {
		t.Fatalf("peek %+v", ps)
	}
	l, err := cl.Lease(ctx, "jobs", qc.LeaseOptions{TTL: 30 * time.Second})
	must(err)
	if l == nil || l.ID != id || l.Group != "g" || l.Attributes["raw"].Value != "\x00\xff" || l.Deliveries != 1 || l.ContentType != "text/plain" || l.Enqueued.IsZero() {
		t.Fatalf("lease %+v", l)
	}
	exp := l.Expires
	if _, err := cl.Extend(ctx, l, time.Minute); err != nil || !l.Expires.After(exp) {
		t.Fatalf("extend: %v, %v after %v", err, l.Expires, exp)
	}
	must(cl.Release(ctx, l, 0))
	if err := cl.Ack(ctx, l); !errors.Is(err, qc.ErrLeaseLost) {
		t.Fatalf("an ack of a released lease: %v", err)
	}
	// A lease of many is one log entry (a tick may join it), not one per
	// message.
	var ten []qc.NewMessage
	for i := range 10 {
		ten = append(ten, qc.NewMessage{Body: []byte(fmt.Sprint("many ", i))})
	}
	if _, err := cl.EnqueueBatch(ctx, "many", ten); err != nil {
		t.Fatal(err)
	}
	c.converged()
	before := applied(c.procs[0])
	if got, err := cl.LeaseMany(ctx, "many", 10, qc.LeaseOptions{}); err != nil || len(got) != 10 {
		t.Fatalf("lease many of 10: %d %v", len(got), err)
	}
	c.converged()
	if n := applied(c.procs[0]) - before; n > 2 {
		t.Fatalf("a lease of 10 took %d log entries", n)
	}
	must(cl.DeleteQueue(ctx, "many"))
	ls, err := cl.LeaseMany(ctx, "jobs", 10, qc.LeaseOptions{})
	must(err)
	if len(ls) != 3 || ls[0].Deliveries != 2 {
		t.Fatalf("lease many %+v", ls)
	}
	errs, err := cl.AckBatch(ctx, "jobs", ls[:2])
	must(err)
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("ack batch %v", errs)
	}
	errs, err = cl.ReleaseBatch(ctx, "jobs", ls[1:], 0)
	must(err)
	if !errors.Is(errs[0], qc.ErrNotFound) || errs[1] != nil {
		t.Fatalf("release batch (the first acked already) %v", errs)
	}
	if m, err := cl.Dequeue(ctx, "jobs", 0); err != nil || m == nil || string(m.Body) != "b1" {
		t.Fatalf("dequeue %+v %v", m, err)
	}
	if m, err := cl.Dequeue(ctx, "jobs", 0); err != nil || m != nil {
		t.Fatalf("dequeue of an empty queue: %+v %v", m, err)
	}
	must(func() error { _, err := cl.Enqueue(ctx, "other", []byte("x")); return err }())
	if ms, err := cl.DequeueMany(ctx, "other", 5, time.Second); err != nil || len(ms) != 1 {
		t.Fatalf("dequeue many %v %v", ms, err)
	}
	cfg, err := cl.Configure(ctx, "jobs", qc.ConfigChange{MaxMessages: qc.Ptr[int64](1), VisibilityTimeoutMS: qc.Ptr[int64](5000)})
	if err != nil || cfg.MaxMessages != 1 || cfg.VisibilityTimeoutMS != 5000 {
		t.Fatalf("configure %+v %v", cfg, err)
	}
	if _, err := cl.Enqueue(ctx, "jobs", []byte("over")); !errors.Is(err, qc.ErrQueueFull) {
		t.Fatalf("past max_messages: %v", err) // the delayed one counts
	}
	var e *qc.Error
	if _, err := cl.Stats(ctx, "nope"); !errors.Is(err, qc.ErrNotFound) || !errors.As(err, &e) || e.Status != 404 {
		t.Fatalf("stats of a missing queue: %v", err)
	}
	if _, err := cl.Enqueue(ctx, "bad name", []byte("x")); !errors.Is(err, qc.ErrInvalid) {
		t.Fatalf("a bad name: %v", err)
	}
	qs, err := cl.Queues(ctx)
	if err != nil || len(qs) != 2 || qs[0].Name != "jobs" {
		t.Fatalf("queues %+v %v", qs, err)
	}
	lim, err := cl.SetLimits(ctx, qc.LimitsChange{MaxQueues: qc.Ptr[int64](50)})
	if err != nil || lim.MaxQueues != 50 || lim.Queues != 2 {
		t.Fatalf("set limits %+v %v", lim, err)
	}
	if lim, err := cl.Limits(ctx); err != nil || lim.MaxQueues != 50 {
		t.Fatalf("limits %+v %v", lim, err)
	}
	if n, err := cl.Purge(ctx, "jobs"); err != nil || n != 1 {
		t.Fatalf("purge %d %v", n, err)
	}
	must(cl.DeleteQueue(ctx, "jobs"))
	if err := cl.DeleteQueue(ctx, "jobs"); !errors.Is(err, qc.ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	nodes, leader, err := cl.Nodes(ctx)
	if err != nil || len(nodes) != 3 || leader == 0 {
		t.Fatalf("nodes %+v %d %v", nodes, leader, err)
	}
	to := leader%3 + 1
	must(cl.TransferLeader(ctx, to))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		agree := true // followers learn of the new leader at its first message
		for _, s := range cl.Status(ctx) {
			agree = agree && s.Error == "" && s.Ready && s.Leader == to
		}
		if agree {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, want leader %d everywhere", cl.Status(ctx), to)
		}
	}
	c.kill(2)
	st3 := cl.Status(ctx)
	if st3[2].Error == "" || st3[2].Ready || !st3[0].Ready {
		t.Fatalf("status with node 3 down: %+v", st3)
	}
}

// Producers enqueue through the client while the leader is killed -9 and
// restarted: every acknowledged send is stored exactly once (its own
// retries never duplicate it), and nothing acknowledged is lost.
func TestClientRetriesAcrossLeaderKill(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	cl := newClient(t, apiURLs(c), qc.WithRetry(qc.RetryPolicy{Attempts: 60, Base: 50 * time.Millisecond, Max: time.Second}))
	ctx := context.Background()
	const producers, each = 4, 60
	var sent sync.Map
	var wg sync.WaitGroup
	var failed atomic.Int64
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				body := fmt.Sprintf("p%d-%d", p, i)
				if _, err := cl.Enqueue(ctx, "work", []byte(body)); err != nil {
					failed.Add(1) // an unacknowledged send may or may not be stored
					continue
				}
				sent.Store(body, true)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	l := c.leader()
	c.kill(l)
	c.start(l)
	wg.Wait()
	got := map[string]int{}
	for {
		ls, err := cl.LeaseMany(ctx, "work", 100, qc.LeaseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) == 0 {
			break
		}
		for _, l := range ls {
			got[string(l.Body)]++
		}
		if errs, err := cl.AckBatch(ctx, "work", ls); err != nil || errors.Join(errs...) != nil {
			t.Fatalf("ack: %v %v", err, errs)
		}
	}
	n := 0
	sent.Range(func(k, _ any) bool {
		n++
		if got[k.(string)] != 1 {
			t.Errorf("acknowledged send %s stored %d times", k, got[k.(string)])
		}
		return true
	})
	for body, k := range got {
		if k > 1 {
			t.Errorf("%s stored %d times", body, k)
		}
	}
	t.Logf("%d acknowledged, %d failed, %d stored", n, failed.Load(), len(got))
	if n == 0 {
		t.Fatal("nothing was acknowledged")
	}
}

// Consume processes every message exactly once by an idempotent handler
// across a leader kill, extends the lease of a handler slower than its
// ttl (no second delivery), and stops cleanly: running handlers finish
// and their messages are acked.
func TestConsume(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	cl := newClient(t, apiURLs(c), qc.WithRetry(qc.RetryPolicy{Attempts: 60, Base: 50 * time.Millisecond, Max: time.Second}))
	ctx := context.Background()
	const n = 120
	var msgs []qc.NewMessage
	for i := range n {
		msgs = append(msgs, qc.NewMessage{Body: []byte(fmt.Sprint("m", i))})
	}
	if _, err := cl.EnqueueBatch(ctx, "tasks", msgs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	done := map[string]bool{} // the handler's idempotent record
	calls := 0
	cctx, stop := context.WithCancel(ctx)
	finished := make(chan error, 1)
	go func() {
		finished <- cl.Consume(cctx, "tasks", func(ctx context.Context, l *qc.Lease) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			done[string(l.Body)] = true
			return nil
		}, qc.ConsumeOptions{Concurrency: 4, TTL: 5 * time.Second, Wait: 2 * time.Second})
	}()
	deadline := time.Now().Add(2 * time.Minute)
	killed := false
	for {
		mu.Lock()
		k := len(done)
		mu.Unlock()
		if k >= n/3 && !killed {
			l := c.leader()
			c.kill(l)
			c.start(l)
			killed = true
		}
		if k == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-finished; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	// A slow handler: lease ttl 3 s, 9 s of work (three ttls: unextended,
	// the lease would end twice over); extensions every second, each with a
	// second to get through on a busy machine; the lease is extended,
	// so the message is not delivered twice.
	if _, err := cl.Enqueue(ctx, "tasks", []byte("slow")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(done) != n {
		t.Fatalf("%d of %d processed", len(done), n)
	}
	t.Logf("%d handler calls for %d messages (at least once)", calls, n)
	mu.Unlock()

	sctx, stopSlow := context.WithCancel(ctx)
	var slowCalls atomic.Int32
	started := make(chan struct{})
	slowDone := make(chan error, 1)
	go func() {
		slowDone <- cl.Consume(sctx, "tasks", func(ctx context.Context, l *qc.Lease) error {
			if slowCalls.Add(1) == 1 {
				close(started)
			}
			select {
			case <-time.After(9 * time.Second):
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		}, qc.ConsumeOptions{Concurrency: 2, TTL: 3 * time.Second, Wait: time.Second})
	}()
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("the slow message was never delivered")
	}
	stopSlow() // asked to stop while the handler runs: it finishes, and its message is acked
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	if k := slowCalls.Load(); k != 1 {
		t.Fatalf("the slow message was handled %d times", k)
	}
	st, err := cl.Stats(ctx, "tasks")
	if err != nil || st.Depth != 0 || st.Leased != 0 || st.Totals.Acked != n+1 {
		t.Fatalf("after both consumers stopped: %+v %v", st, err)
	}
}

// The client over TLS with a client certificate, and with tokens.
func TestClientTLSAndTokens(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "raftq")
	nodeCert, nodeKey := ca.issue("node")
	clientCert, clientKey := ca.issue("client")
	file := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(file, []byte("tok-a admin,producer,consumer\ntok-p producer\n"), 0o600)
	c := prepareCluster(t, 1, nil, "--cert-file", nodeCert, "--key-file", nodeKey, "--client-cert-auth", "--trusted-ca-file", ca.file,
		"--auth-token-file", file)
	c.procs[0].api = strings.Replace(c.procs[0].api, "http://", "https://", 1)
	harnessTokens.tls.Store(hostPort(c.procs[0].api), tlsClient(t, ca, clientCert, clientKey).Transport)
	harnessTokens.hosts.Store(hostPort(c.procs[0].api), "tok-a")
	c.startAll()
	ctx := context.Background()
	admin := newClient(t, apiURLs(c), qc.WithTLS(ca.file, clientCert, clientKey), qc.WithToken("tok-a"))
	producer := newClient(t, apiURLs(c), qc.WithTLS(ca.file, clientCert, clientKey), qc.WithToken("tok-p"))
	if _, err := producer.Enqueue(ctx, "q", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := producer.Lease(ctx, "q", qc.LeaseOptions{}); !errors.Is(err, qc.ErrForbidden) {
		t.Fatalf("a lease with a producer's token: %v", err)
	}
	if l, err := admin.Lease(ctx, "q", qc.LeaseOptions{}); err != nil || l == nil {
		t.Fatalf("a lease with the admin's token: %v", err)
	}
	noToken := newClient(t, apiURLs(c), qc.WithTLS(ca.file, clientCert, clientKey))
	if _, err := noToken.Stats(ctx, "q"); !errors.Is(err, qc.ErrUnauthorized) {
		t.Fatalf("no token: %v", err)
	}
	noCert := newClient(t, apiURLs(c), qc.WithTLS(ca.file, "", ""), qc.WithToken("tok-a"), qc.WithRetry(qc.RetryPolicy{Attempts: 1, Base: time.Millisecond, Max: time.Millisecond}))
	if _, err := noCert.Stats(ctx, "q"); err == nil {
		t.Fatal("a client without a certificate was served")
	}
}
