package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// limitBody is a refusal's JSON.
type limitBody struct {
	Error   string
	Limit   string
	Queue   string
	Value   *int64
	Usage   *int64
	Request *int64
}

func refusal(t *testing.T, r response) limitBody {
	t.Helper()
	var b limitBody
	if err := json.Unmarshal(r.body, &b); err != nil || b.Value == nil || b.Usage == nil || b.Request == nil {
		t.Fatalf("refusal %d: body %s does not name the limit (%v)", r.status, r.body, err)
	}
	return b
}

// enqueueKeyed sends body with an idempotency key, retrying while
// the outcome is unknown (503), so that every message acknowledged is one
// the cluster stored and stored once. It returns the final answer.
func enqueueKeyed(t *testing.T, p *proc, queue, key, body string) response {
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPut, p.api+"/queues/"+queue, strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err == nil {
			r := response{status: resp.StatusCode, header: resp.Header}
			r.body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && r.status != http.StatusServiceUnavailable {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("enqueue %s: no definite answer in 60s (%v)", body, err)
			return response{}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// converged waits until every node has applied the same index, and checks
// that they then show the same state hash.
func (c *cluster) converged() {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var sts []struct {
			Applied uint64
			Hash    string
		}
		for _, p := range c.procs {
			var st struct {
				Applied uint64
				Hash    string
			}
			if status, err := getJSON(p.api+"/debug/state", &st); err != nil || status != http.StatusOK {
				c.t.Fatalf("node %d /debug/state: %d %v", p.id, status, err)
			}
			sts = append(sts, st)
		}
		same := true
		for _, st := range sts[1:] {
			same = same && st.Applied == sts[0].Applied
		}
		if same {
			for i, st := range sts {
				if st.Hash != sts[0].Hash {
					c.t.Fatalf("nodes 1 and %d applied %d but hash %s and %s", i+1, st.Applied, sts[0].Hash, st.Hash)
				}
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("nodes did not apply the same index in 60s")
}

type statsView struct {
	Queue            string
	Depth            int
	Leased           int
	Delayed          int
	Bytes            int64
	Keys             int
	OldestReadyAgeMS int64 `json:"oldest_ready_age_ms"`
	Config           struct {
		MaxDeliveries   uint64 `json:"max_deliveries"`
		DeadLetterQueue string `json:"dead_letter_queue"`
		MaxMessages     int64  `json:"max_messages"`
		MaxBytes        int64  `json:"max_bytes"`
	}
	Totals struct {
		Enqueued     uint64
		Popped       uint64
		Acked        uint64
		DeadLettered uint64 `json:"dead_lettered"`
		Purged       uint64
	}
}

func stats(t *testing.T, p *proc, queue string) statsView {
	t.Helper()
	var st statsView
	if status, err := getJSON(p.api+"/queues/"+queue+"/stats", &st); err != nil || status != http.StatusOK {
		t.Fatalf("node %d stats %s: %d %v", p.id, queue, status, err)
	}
	return st
}

type limitsView struct {
	MaxQueues int64 `json:"max_queues"`
	MaxBytes  int64 `json:"max_bytes"`
	Queues    int
	Bytes     int64
	Alarms    []uint64
}

func limits(t *testing.T, p *proc) limitsView {
	t.Helper()
	var l limitsView
	if status, err := getJSON(p.api+"/mgmt/limits", &l); err != nil || status != http.StatusOK {
		t.Fatalf("node %d limits: %d %v", p.id, status, err)
	}
	return l
}

// Producers on every node fill one queue past its max_messages at once:
// exactly the limit is stored, the rest is refused with 429 naming the
// limit, every acknowledged message comes out, and the replicas agree.
func TestQueueLimitFromManyProducers(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	const limit, producers, each = 40, 6, 20
	if r := mgmt(t, http.MethodPut, c.procs[0].api+"/queues/q/config", `{"max_messages":40}`); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), `"max_messages":40`) {
		t.Fatalf("config: %d %s", r.status, r.body)
	}
	var mu sync.Mutex
	var acked []string
	refused := 0
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			node := c.procs[p%len(c.procs)]
			for i := range each {
				body := fmt.Sprintf("p%d-%d", p, i)
				r := enqueueKeyed(t, node, "q", body, body)
				mu.Lock()
				switch r.status {
				case http.StatusCreated, http.StatusOK:
					acked = append(acked, body)
				case http.StatusTooManyRequests:
					refused++
					if b := refusal(t, r); b.Limit != "max_messages" || b.Queue != "q" || *b.Value != limit || r.header.Get("Retry-After") != "1" {
						t.Errorf("429 %s, Retry-After %q", r.body, r.header.Get("Retry-After"))
					}
				default:
					t.Errorf("enqueue %s: %d %s", body, r.status, r.body)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(acked) != limit || refused != producers*each-limit {
		t.Fatalf("%d acknowledged, %d refused; want exactly %d stored", len(acked), refused, limit)
	}
	c.converged()
	for _, p := range c.procs {
		if st := stats(t, p, "q"); st.Depth != limit || st.Totals.Enqueued != limit {
			t.Fatalf("node %d: depth %d, enqueued %d", p.id, st.Depth, st.Totals.Enqueued)
		}
	}
	got := drain(t, c.procs[1], "q")
	slices.Sort(got)
	slices.Sort(acked)
	if !slices.Equal(got, acked) {
		t.Fatalf("drained %v\nacked   %v", got, acked)
	}
	mustEnqueue(t, c.procs[2], "q", "room again")
	c.converged()
}

// A small cluster max_bytes across many queues: past it 507 naming the
// cluster's limit (a batch refused whole), an idempotent replay still 200,
// a refusal seen by the cheap check costs no log entry, and draining works
// at the limit and makes room.
func TestClusterBytesAcrossQueues(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	const budget = 40_000
	if r := mgmt(t, http.MethodPut, c.procs[1].api+"/mgmt/limits", `{"max_bytes":40000}`); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), `"max_bytes":40000`) || !strings.Contains(string(r.body), `"max_queues":10000`) {
		t.Fatalf("set limits: %d %s", r.status, r.body)
	}
	body := strings.Repeat("x", 1000)
	if r := enqueueKeyed(t, c.procs[0], "q0", "keyed", body); r.status != http.StatusCreated {
		t.Fatalf("keyed: %d %s", r.status, r.body)
	}
	stored := 1
	full := false
	for i := 0; !full && i < 100; i++ {
		p := c.procs[i%3]
		r, err := do(http.MethodPut, p.api+fmt.Sprintf("/queues/q%d", i%8), "text/plain", strings.NewReader(body))
		switch {
		case err != nil:
			t.Fatal(err)
		case r.status == http.StatusCreated:
			stored++
		case r.status == http.StatusInsufficientStorage:
			full = true
			if b := refusal(t, r); b.Limit != "max_bytes" || b.Queue != "" || *b.Value != budget || *b.Usage+*b.Request <= budget {
				t.Fatalf("507 %s", r.body)
			}
		default:
			t.Fatalf("enqueue: %d %s", r.status, r.body)
		}
	}
	if !full {
		t.Fatal("100 KB went into a 40,000-byte budget")
	}
	l := limits(t, c.procs[2])
	if l.Bytes > budget || l.Bytes < budget-2000 || l.Queues != 8 {
		t.Fatalf("limits at the budget: %+v", l)
	}
	if r := enqueueKeyed(t, c.procs[2], "q0", "keyed", body); r.status != http.StatusOK || r.header.Get("Idempotent-Replay") != "true" {
		t.Fatalf("replay at the limit: %d %s", r.status, r.body)
	}
	r := mgmt(t, http.MethodPost, c.procs[0].api+"/queues/q1/batch", fmt.Sprintf(`{"messages":[{"body":%q},{"body":%q}]}`, body, body))
	if r.status != http.StatusInsufficientStorage {
		t.Fatalf("batch at the limit: %d %s", r.status, r.body)
	}
	// Refused by the cheap check: nothing reaches the log.
	before := c.settle()
	for i := range 20 {
		if r, _ := do(http.MethodPut, c.procs[i%3].api+"/queues/q2", "text/plain", strings.NewReader(body)); r.status != http.StatusInsufficientStorage {
			t.Fatalf("at the limit: %d %s", r.status, r.body)
		}
	}
	if after := c.settle(); after != before {
		t.Fatalf("20 refused enqueues wrote %d log entries", after-before)
	}
	drained := 0
	for i := range 8 {
		drained += len(drain(t, c.procs[i%3], fmt.Sprintf("q%d", i)))
	}
	if drained != stored {
		t.Fatalf("drained %d of %d stored", drained, stored)
	}
	if l := limits(t, c.procs[0]); l.Bytes != 5+160 { // the key "keyed" is remembered for its window
		t.Fatalf("bytes after draining: %+v", l)
	}
	mustEnqueue(t, c.procs[1], "q3", body)
	c.converged()
}

// max_queues: a queue past it is refused with 507, whether by an enqueue
// or a config; deleting one makes room.
func TestMaxQueues(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	if r := mgmt(t, http.MethodPut, c.procs[0].api+"/mgmt/limits", `{"max_queues":3}`); r.status != http.StatusOK {
		t.Fatalf("set limits: %d %s", r.status, r.body)
	}
	for i, q := range []string{"a", "b", "c"} {
		mustEnqueue(t, c.procs[i], q, "m")
	}
	r, _ := do(http.MethodPut, c.procs[1].api+"/queues/d", "text/plain", strings.NewReader("m"))
	if r.status != http.StatusInsufficientStorage {
		t.Fatalf("4th queue: %d %s", r.status, r.body)
	}
	if b := refusal(t, r); b.Limit != "max_queues" || *b.Value != 3 || *b.Usage != 3 || *b.Request != 1 {
		t.Fatalf("507 %s", r.body)
	}
	if r := mgmt(t, http.MethodPut, c.procs[2].api+"/queues/e/config", `{"max_deliveries":3}`); r.status != http.StatusInsufficientStorage {
		t.Fatalf("config of a 4th queue: %d %s", r.status, r.body)
	}
	if r := mgmt(t, http.MethodPut, c.procs[2].api+"/queues/a/config", `{"max_deliveries":3}`); r.status != http.StatusOK {
		t.Fatalf("config of an existing queue at the limit: %d %s", r.status, r.body)
	}
	if r := mgmt(t, http.MethodDelete, c.procs[0].api+"/queues/c", ""); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	mustEnqueue(t, c.procs[1], "d", "m")
	if l := limits(t, c.procs[2]); l.Queues != 3 || l.MaxQueues != 3 || l.Alarms == nil {
		t.Fatalf("limits: %+v", l)
	}
	for _, body := range []string{`{}`, `{"max_queues":-1}`, `{"max_bytes":-1}`} {
		if r := mgmt(t, http.MethodPut, c.procs[0].api+"/mgmt/limits", body); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d", body, r.status)
		}
	}
	c.converged()
}

// All three nodes killed at once with the cluster budget full, with
// snapshots taken on the way: they come back, still refuse what would go
// past the budget, and serve every acknowledged message.
func TestRestartAllAtTheLimit(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, "--snapshot-count", "10")
	if r := mgmt(t, http.MethodPut, c.procs[0].api+"/mgmt/limits", `{"max_bytes":300000}`); r.status != http.StatusOK {
		t.Fatalf("set limits: %d %s", r.status, r.body)
	}
	acked := map[string]bool{}
	full := false
	for b := 0; !full && b < 100; b++ {
		var items []string
		for i := range 10 {
			items = append(items, fmt.Sprintf(`{"body":"%d-%d-%s"}`, b, i, strings.Repeat("x", 1000)))
		}
		r, err := do(http.MethodPost, c.procs[b%3].api+"/queues/full/batch", "application/json",
			strings.NewReader(`{"messages":[`+strings.Join(items, ",")+`]}`))
		switch {
		case err != nil || r.status == http.StatusServiceUnavailable:
			// Outcome unknown: not acknowledged, may or may not be stored.
		case r.status == http.StatusCreated:
			for i := range 10 {
				acked[fmt.Sprintf("%d-%d-%s", b, i, strings.Repeat("x", 1000))] = true
			}
		case r.status == http.StatusInsufficientStorage:
			full = true
		default:
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	if !full {
		t.Fatal("1 MB went into a 300,000-byte budget")
	}
	c.converged() // a batch answered 503 may still have been applied
	before := stats(t, c.procs[0], "full")
	for i := range c.procs {
		c.kill(i)
	}
	for i := range c.procs {
		c.spawn(i)
	}
	for i := range c.procs {
		c.waitServing(c.procs[i])
	}
	c.leader()
	if l := limits(t, c.procs[1]); l.Bytes != before.Bytes || l.MaxBytes != 300000 {
		t.Fatalf("after the restart: limits %+v, bytes before %d", l, before.Bytes)
	}
	tooMuch := `{"messages":[` + strings.Repeat(`{"body":"`+strings.Repeat("y", 1000)+`"},`, 29) + `{"body":"y"}]}`
	if r, _ := do(http.MethodPost, c.procs[2].api+"/queues/full/batch", "application/json", strings.NewReader(tooMuch)); r.status != http.StatusInsufficientStorage {
		t.Fatalf("enqueue at the limit after the restart: %d %s", r.status, r.body)
	}
	got := drain(t, c.procs[2], "full")
	if len(got) != before.Depth {
		t.Fatalf("drained %d after the restart, %d were queued before it", len(got), before.Depth)
	}
	seen := map[string]bool{}
	for _, m := range got {
		seen[m] = true
	}
	for m := range acked {
		if !seen[m] {
			t.Fatalf("acknowledged message %.8s… lost in the restart", m)
		}
	}
	c.converged()
}
