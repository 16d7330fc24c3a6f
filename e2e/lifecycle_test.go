package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Deleting a queue answers its waiting long polls (a pop on one node, a
// lease on another) with 204 at once, not at the end of their wait; a
// queue used again after the delete gives ids above every old one.
func TestDeleteAnswersWaitersAndKeepsIDs(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	var last uint64
	for i := range 5 {
		last = mustEnqueue(t, c.procs[i%3], "q", fmt.Sprint("m", i))
	}
	drain(t, c.procs[0], "q")
	type answer struct {
		status int
		took   time.Duration
	}
	answers := make(chan answer, 2)
	start := time.Now()
	for _, poll := range []struct {
		method, url string
	}{
		{http.MethodGet, c.procs[1].api + "/queues/q?wait=60s"},
		{http.MethodPost, c.procs[2].api + "/queues/q/leases?wait=60s"},
	} {
		go func() {
			r, err := do(poll.method, poll.url, "", nil)
			if err != nil {
				t.Error(err)
			}
			answers <- answer{r.status, time.Since(start)}
		}()
	}
	time.Sleep(time.Second) // let both polls start waiting (nothing is ready)
	if r := mgmt(t, http.MethodDelete, c.procs[0].api+"/queues/q", ""); r.status != http.StatusNoContent || r.header.Get("Raft-Index") == "" {
		t.Fatalf("delete: %d %s (Raft-Index %q)", r.status, r.body, r.header.Get("Raft-Index"))
	}
	for range 2 {
		if a := <-answers; a.status != http.StatusNoContent || a.took > 45*time.Second {
			t.Fatalf("waiting poll after delete: %d after %v, want 204 well before its 60s wait", a.status, a.took)
		}
	}
	for _, p := range c.procs {
		if d, _ := depths(p); len(d) != 0 {
			t.Fatalf("node %d still lists %v", p.id, d)
		}
		for _, path := range []string{"/queues/q/stats", "/queues/q/messages"} {
			if r, _ := do(http.MethodGet, p.api+path, "", nil); r.status != http.StatusNotFound {
				t.Fatalf("node %d %s after delete: %d %s", p.id, path, r.status, r.body)
			}
		}
	}
	for _, req := range []struct{ method, path string }{{http.MethodDelete, "/queues/q"}, {http.MethodPost, "/queues/q/purge"}} {
		if r := mgmt(t, req.method, c.procs[1].api+req.path, ""); r.status != http.StatusNotFound {
			t.Fatalf("%s %s of a deleted queue: %d %s", req.method, req.path, r.status, r.body)
		}
	}
	if id := mustEnqueue(t, c.procs[2], "q", "again"); id <= last {
		t.Fatalf("a queue made after the delete gave id %d, not above the old %d", id, last)
	}
	if id := mustEnqueue(t, c.procs[1], "fresh", "x"); id <= last {
		t.Fatalf("another new queue gave id %d, not above the deleted queue's %d", id, last)
	}
	c.converged()
}

// Purge drops ready messages and keeps leased ones, which can still be
// acked or released; stats count it all.
func TestPurgeKeepsLeases(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	for i := range 5 {
		mustEnqueue(t, c.procs[i%3], "q", fmt.Sprint("m", i))
	}
	var tokens []string
	var ids []string
	for i := range 2 {
		r, ok := leaseMsg(t, c.procs[1+i], "q", "60s")
		if !ok {
			t.Fatalf("lease %d: %d %s", i, r.status, r.body)
		}
		tokens, ids = append(tokens, r.header.Get("Lease-Token")), append(ids, r.header.Get("Message-Id"))
	}
	r := mgmt(t, http.MethodPost, c.procs[0].api+"/queues/q/purge", "")
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"queue":"q","purged":3}` || r.header.Get("Raft-Index") == "" {
		t.Fatalf("purge: %d %s", r.status, r.body)
	}
	if st := stats(t, c.procs[2], "q"); st.Depth != 0 || st.Leased != 2 {
		t.Fatalf("after purge: %+v", st)
	}
	if r := mgmt(t, http.MethodDelete, c.procs[2].api+"/queues/q/messages/"+ids[0]+"?lease="+tokens[0], ""); r.status != http.StatusNoContent {
		t.Fatalf("ack after purge: %d %s", r.status, r.body)
	}
	if r := mgmt(t, http.MethodPost, c.procs[0].api+"/queues/q/messages/"+ids[1]+"/release?lease="+tokens[1], ""); r.status != http.StatusNoContent {
		t.Fatalf("release after purge: %d %s", r.status, r.body)
	}
	body, _, found, err := dequeue(c.procs[1], "q")
	if err != nil || !found || body != "m1" {
		t.Fatalf("the released message: %q %v %v", body, found, err)
	}
	st := stats(t, c.procs[0], "q")
	tot := st.Totals
	if st.Depth != 0 || st.Leased != 0 || tot.Enqueued != 5 || tot.Purged != 3 || tot.Acked != 1 || tot.Popped != 1 || st.Bytes != 0 {
		t.Fatalf("stats: %+v", st)
	}
	c.converged()
}

type peeked struct {
	ID          uint64
	Body        *string
	BodyB64     *string `json:"body_b64"`
	ContentType string  `json:"content_type"`
	Deliveries  uint64
	EnqueuedAt  time.Time `json:"enqueued_at"`
}

func peek(t *testing.T, p *proc, query string) []peeked {
	t.Helper()
	var v struct{ Messages []peeked }
	if status, err := getJSON(p.api+"/queues/q/messages"+query, &v); err != nil || status != http.StatusOK {
		t.Fatalf("node %d peek%s: %d %v", p.id, query, status, err)
	}
	return v.Messages
}

// Peek on every node lists ready messages in FIFO order and takes none;
// stats agree; bad max is a 400.
func TestPeekAcrossNodes(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	for i := range 9 {
		mustEnqueue(t, c.procs[i%3], "q", fmt.Sprint("m", i))
	}
	if r, err := do(http.MethodPut, c.procs[1].api+"/queues/q", "application/x-bin", strings.NewReader("\xff\x00")); err != nil || r.status != http.StatusCreated {
		t.Fatalf("binary: %d %v", r.status, err)
	}
	if r, ok := leaseMsg(t, c.procs[2], "q", "60s"); !ok { // m0 leased: not ready, not shown
		t.Fatalf("lease: %d %s", r.status, r.body)
	}
	for _, p := range c.procs {
		ms := peek(t, p, "")
		if len(ms) != 9 {
			t.Fatalf("node %d peeked %d, want 9", p.id, len(ms))
		}
		for i, m := range ms[:8] {
			if m.Body == nil || *m.Body != fmt.Sprint("m", i+1) || m.ContentType != "text/plain" || (i > 0 && m.ID <= ms[i-1].ID) {
				t.Fatalf("node %d peek %d: %+v", p.id, i, m)
			}
			if d := time.Since(m.EnqueuedAt); d < -time.Minute || d > time.Minute {
				t.Fatalf("enqueued_at %v", m.EnqueuedAt)
			}
		}
		if b := ms[8]; b.BodyB64 == nil || *b.BodyB64 != "/wA=" || b.Body != nil {
			t.Fatalf("binary body: %+v", b)
		}
		if two := peek(t, p, "?max=2"); len(two) != 2 || *two[0].Body != "m1" {
			t.Fatalf("max=2: %+v", two)
		}
		if st := stats(t, p, "q"); st.Depth != 9 || st.Leased != 1 || st.Totals.Enqueued != 10 || st.Totals.Popped != 0 {
			t.Fatalf("node %d stats after peeking: %+v", p.id, st)
		}
	}
	for _, bad := range []string{"?max=0", "?max=1001", "?max=x"} {
		if r, _ := do(http.MethodGet, c.procs[0].api+"/queues/q/messages"+bad, "", nil); r.status != http.StatusBadRequest {
			t.Fatalf("%s: %d", bad, r.status)
		}
	}
	body, _, _, _ := dequeue(c.procs[0], "q")
	if ms := peek(t, c.procs[2], "?max=1"); body != "m1" || *ms[0].Body != "m2" {
		t.Fatalf("after a pop of %q the head shows %+v", body, ms)
	}
	c.converged()
}

// Stats on a queue with config, delays and a key; config answers the
// whole config and sets only what it names.
func TestStatsAndConfig(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	r := mgmt(t, http.MethodPut, c.procs[0].api+"/queues/q/config", `{"max_deliveries":3,"dead_letter_queue":"q.dlq"}`)
	if r.status != http.StatusOK {
		t.Fatalf("config: %d %s", r.status, r.body)
	}
	r = mgmt(t, http.MethodPut, c.procs[1].api+"/queues/q/config", `{"max_bytes":100000}`)
	var cfg map[string]any
	json.Unmarshal(r.body, &cfg)
	if r.status != http.StatusOK || cfg["max_deliveries"] != 3.0 || cfg["dead_letter_queue"] != "q.dlq" || cfg["max_bytes"] != 100000.0 || cfg["max_messages"] != 0.0 {
		t.Fatalf("second config: %d %s", r.status, r.body)
	}
	if l := limits(t, c.procs[2]); l.Queues != 2 { // the dead-letter queue was made with it
		t.Fatalf("limits: %+v", l)
	}
	mustEnqueue(t, c.procs[1], "q", "ready")
	req, _ := http.NewRequest(http.MethodPut, c.procs[2].api+"/queues/q", strings.NewReader("later"))
	req.Header.Set("Delay", "1h")
	req.Header.Set("Idempotency-Key", "k1")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("delayed: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	st := stats(t, c.procs[0], "q")
	want := int64(len("ready")+len("text/plain")+96) + int64(len("later")+len("application/octet-stream")+96) + int64(len("k1")+160)
	if st.Queue != "q" || st.Depth != 1 || st.Delayed != 1 || st.Keys != 1 || st.Bytes != want ||
		st.Config.MaxDeliveries != 3 || st.Config.DeadLetterQueue != "q.dlq" || st.Config.MaxBytes != 100000 || st.Totals.Enqueued != 2 {
		t.Fatalf("stats: %+v (bytes want %d)", st, want)
	}
	if st.OldestReadyAgeMS < 0 || st.OldestReadyAgeMS > 60_000 {
		t.Fatalf("oldest ready age %d ms", st.OldestReadyAgeMS)
	}
	for _, body := range []string{`{}`, `{"max_messages":-1}`} {
		if r := mgmt(t, http.MethodPut, c.procs[0].api+"/queues/q/config", body); r.status != http.StatusBadRequest {
			t.Fatalf("%s: %d", body, r.status)
		}
	}
	if got := stats(t, c.procs[1], "q").Config.MaxBytes; got != 100000 {
		t.Fatalf("a refused config changed max_bytes to %d", got)
	}
	c.converged()
}

// Under load from every node, deletes, purges and peeks of the same queue
// on other nodes: no id is handed out twice across the queue's lives,
// every peek is in FIFO order, what is left drains, and the replicas
// agree.
func TestLifecycleUnderLoad(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	stop := make(chan struct{})
	var mu sync.Mutex
	ids := map[uint64]string{}
	unknown := map[string]bool{}
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			node := c.procs[p%3]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf("p%d-%d", p, i)
				id, err := enqueue(node, "busy", body)
				mu.Lock()
				if err != nil { // a 503 in flight: stored or not, its id unknown
					unknown[body] = true
					mu.Unlock()
					continue
				}
				if prev, dup := ids[id]; dup {
					t.Errorf("id %d handed out to %s and to %s", id, prev, body)
				}
				ids[id] = body
				mu.Unlock()
			}
		})
	}
	lifecycle := func(node *proc, method, path string, ok ...int) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r, err := do(method, node.api+path, "", nil)
			if err == nil && !slices.Contains(ok, r.status) {
				t.Errorf("%s %s: %d %s", method, path, r.status, r.body)
			}
		}
	}
	wg.Go(func() {
		lifecycle(c.procs[1], http.MethodDelete, "/queues/busy", http.StatusNoContent, http.StatusNotFound)
	})
	wg.Go(func() {
		lifecycle(c.procs[2], http.MethodPost, "/queues/busy/purge", http.StatusOK, http.StatusNotFound)
	})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var v struct{ Messages []peeked }
			status, err := getJSON(c.procs[0].api+"/queues/busy/messages?max=1000", &v)
			if err != nil || status == http.StatusNotFound {
				continue
			}
			for i := 1; i < len(v.Messages); i++ {
				if v.Messages[i].ID <= v.Messages[i-1].ID {
					t.Errorf("peek out of order: %d after %d", v.Messages[i].ID, v.Messages[i-1].ID)
				}
			}
		}
	})
	time.Sleep(3 * time.Second) // the load's length, not an assertion
	close(stop)
	wg.Wait()
	c.converged()
	acked := map[string]bool{}
	for _, b := range ids {
		acked[b] = true
	}
	for _, body := range drain(t, c.procs[0], "busy") {
		if !acked[body] && !unknown[body] {
			t.Errorf("drained %q, never enqueued", body)
		}
	}
	if len(ids) == 0 {
		t.Fatal("no enqueue succeeded")
	}
	t.Logf("%d enqueues acknowledged", len(ids))
	c.converged()
}
