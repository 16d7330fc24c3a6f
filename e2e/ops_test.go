package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scrape reads node p's /metrics: each sample line's series (name and
// labels as written) → value.
func scrape(t *testing.T, p *proc) map[string]float64 {
	t.Helper()
	resp, err := client.Get(p.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// After a known workload the counters say what happened: what each
// queue holds and took in all (the same on every node, from the state
// machine), requests by route and status and refusals by limit (on the
// node that answered), and etcd's own WAL fsync histogram.
func TestMetricsAfterWorkload(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	for i := range 10 {
		mustEnqueue(t, c.procs[0], "m", fmt.Sprint(i))
	}
	for range 4 {
		if _, _, found, err := dequeue(c.procs[1], "m"); err != nil || !found {
			t.Fatalf("pop: %v %v", found, err)
		}
	}
	for i := range 3 {
		r, _ := leaseMsg(t, c.procs[1], "m", "60s")
		if i < 2 {
			ack, err := do(http.MethodDelete, fmt.Sprintf("%s/queues/m/messages/%s?lease=%s", c.procs[1].api, r.header.Get("Message-Id"), r.header.Get("Lease-Token")), "", nil)
			if err != nil || ack.status != http.StatusNoContent {
				t.Fatalf("ack: %v %v", ack.status, err)
			}
		}
	}
	if r := mgmt(t, http.MethodPut, c.procs[0].api+"/queues/m/config", `{"max_messages":5}`); r.status != http.StatusOK {
		t.Fatalf("config: %d %s", r.status, r.body)
	}
	mustEnqueue(t, c.procs[2], "m", "fits") // 3 ready + 1 leased + this = 5
	if r, _ := do(http.MethodPut, c.procs[2].api+"/queues/m", "text/plain", strings.NewReader("over")); r.status != http.StatusTooManyRequests {
		t.Fatalf("past max_messages: %d", r.status)
	}
	c.converged()
	want := map[string]float64{
		`raftq_queue_enqueued_total{queue="m"}`: 11,
		`raftq_queue_dequeued_total{queue="m"}`: 4,
		`raftq_queue_acked_total{queue="m"}`:    2,
		`raftq_queue_depth{queue="m"}`:          4,
		`raftq_queue_leased{queue="m"}`:         1,
		`raftq_queues`:                          1,
	}
	for _, p := range c.procs {
		m := scrape(t, p)
		for series, v := range want {
			if m[series] != v {
				t.Errorf("node %d: %s = %v, want %v", p.id, series, m[series], v)
			}
		}
		if m["etcd_disk_wal_fsync_duration_seconds_count"] == 0 {
			t.Errorf("node %d: no WAL fsync observed", p.id)
		}
		if m["raftq_raft_applied_index"] == 0 || m["raftq_raft_term"] == 0 || m["raftq_raft_has_leader"] != 1 {
			t.Errorf("node %d: raft gauges %v %v %v", p.id, m["raftq_raft_applied_index"], m["raftq_raft_term"], m["raftq_raft_has_leader"])
		}
	}
	m0, m2 := scrape(t, c.procs[0]), scrape(t, c.procs[2])
	if v := m0[`raftq_http_requests_total{code="201",method="PUT",route="/queues/{queue}"}`]; v != 10 {
		t.Errorf("node 1 answered %v enqueues 201, want 10", v)
	}
	if v := m2[`raftq_refusals_total{limit="max_messages",scope="queue"}`]; v != 1 {
		t.Errorf("node 3 refusals by max_messages: %v, want 1", v)
	}
	if v := m2[`raftq_http_requests_total{code="429",method="PUT",route="/queues/{queue}"}`]; v != 1 {
		t.Errorf("node 3 answered %v enqueues 429, want 1", v)
	}
	var leaders float64
	for _, p := range c.procs {
		leaders += scrape(t, p)["raftq_raft_is_leader"]
	}
	if leaders != 1 {
		t.Errorf("%v nodes say they lead", leaders)
	}
}

// /healthz answers while the process serves; /readyz says 503 with a
// reason on a node cut off from the others (here: both others paused),
// and 200 again once they are back. /mgmt/status reads the node locally.
func TestReadinessAndStatus(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	p := c.procs[2]
	ready := func() (int, string) {
		r, err := do(http.MethodGet, p.api+"/readyz", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return r.status, string(r.body)
	}
	waitFor(t, func() bool { s, _ := ready(); return s == http.StatusOK }, "node 3 ready")
	var st struct {
		ID, Term, Leader, Commit, Applied uint64
		WALBytes                          int64 `json:"wal_bytes"`
		Version                           string
		Uptime                            float64 `json:"uptime_seconds"`
	}
	if status, err := getJSON(p.api+"/mgmt/status", &st); err != nil || status != http.StatusOK || st.ID != 3 || st.Term == 0 ||
		st.Leader == 0 || st.Applied == 0 || st.WALBytes == 0 || st.Version == "" || st.Uptime <= 0 {
		t.Fatalf("status: %d %+v %v", status, st, err)
	}
	for _, i := range []int{0, 1} {
		c.procs[i].cmd.Process.Signal(syscall.SIGSTOP)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			for _, i := range []int{0, 1} {
				c.procs[i].cmd.Process.Signal(syscall.SIGCONT)
			}
		}
	}
	t.Cleanup(resume)
	var body string
	waitFor(t, func() bool { s, b := ready(); body = b; return s == http.StatusServiceUnavailable }, "node 3 not ready while cut off")
	var why struct{ Status, Reason string }
	if err := json.Unmarshal([]byte(body), &why); err != nil || why.Reason == "" {
		t.Fatalf("503 body %s", body)
	}
	if r, err := do(http.MethodGet, p.api+"/healthz", "", nil); err != nil || r.status != http.StatusOK {
		t.Fatalf("healthz while cut off: %v %v", r.status, err)
	}
	resume()
	deadline := time.Now().Add(60 * time.Second)
	for s, _ := ready(); s != http.StatusOK; s, _ = ready() {
		if time.Now().After(deadline) {
			t.Fatal("node 3 not ready again 60 s after the others came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
