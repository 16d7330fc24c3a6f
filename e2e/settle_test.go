package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// One request acks many leases, and costs few log entries: the node
// gathers its acks into groups. A lost lease in it is refused alone; a
// release batch makes its messages ready again.
func TestBatchAckAndRelease(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	const n = 100
	for i := range n + 2 {
		mustEnqueue(t, c.procs[i%3], "jobs", fmt.Sprint("m", i))
	}
	var acks, releases []string
	for i := range n + 2 {
		r, ok := leaseMsg(t, c.procs[i%3], "jobs", "60s")
		if !ok {
			t.Fatalf("lease %d found nothing", i)
		}
		item := fmt.Sprintf(`{"id":%s,"lease":%q}`, r.header.Get("Message-Id"), r.header.Get("Lease-Token"))
		if i < n {
			acks = append(acks, item)
		} else {
			releases = append(releases, item)
		}
	}
	acks = append(acks, `{"id":999999,"lease":"1.lfls"}`) // no such message
	before := c.settle()
	r := mgmt(t, http.MethodPost, c.procs[1].api+"/queues/jobs/acks", `{"acks":[`+strings.Join(acks, ",")+`]}`)
	var out struct {
		Results []struct {
			ID     uint64
			Status int
		}
	}
	if err := json.Unmarshal(r.body, &out); err != nil || r.status != http.StatusOK || len(out.Results) != n+1 {
		t.Fatalf("acks: %d %s", r.status, r.body)
	}
	for i, res := range out.Results[:n] {
		if res.Status != http.StatusNoContent {
			t.Fatalf("ack %d: %+v", i, res)
		}
	}
	if last := out.Results[n]; last.Status != http.StatusNotFound || last.ID != 999999 {
		t.Fatalf("an ack of no message: %+v", last)
	}
	entries := c.settle() - before
	t.Logf("%d acks in one request: %d log entries", n+1, entries)
	if entries >= n/2 {
		t.Fatalf("%d acks in one request cost %d log entries: not grouped", n+1, entries)
	}
	if st := stats(t, c.procs[2], "jobs"); st.Totals.Acked != n || st.Leased != 2 {
		t.Fatalf("after the acks: %+v", st)
	}
	r = mgmt(t, http.MethodPost, c.procs[0].api+"/queues/jobs/releases", `{"releases":[`+strings.Join(releases, ",")+`]}`)
	if r.status != http.StatusOK || strings.Count(string(r.body), `"status":204`) != 2 {
		t.Fatalf("releases: %d %s", r.status, r.body)
	}
	if got := drain(t, c.procs[2], "jobs"); len(got) != 2 {
		t.Fatalf("after the releases, drained %v", got)
	}
	c.converged()
}
