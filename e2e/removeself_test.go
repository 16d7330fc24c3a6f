package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// A node asked to remove itself answers 200 with the membership it
// applied (it used to stop first and answer 503), then exits 0.
func TestRemoveSelfAnswersTheMembership(t *testing.T) {
	c := startCluster(t, 3)
	self := c.procs[(c.leader()+1)%3] // a follower
	r := mgmt(t, http.MethodDelete, fmt.Sprintf("%s/mgmt/nodes/%d", self.api, self.id), "")
	if r.status != http.StatusOK {
		t.Fatalf("remove self: %d %s", r.status, r.body)
	}
	var v nodesView
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if len(v.Nodes) != 2 {
		t.Fatalf("membership after removing itself: %s", r.body)
	}
	for _, n := range v.Nodes {
		if n.ID == uint64(self.id) {
			t.Fatalf("the removed node is still listed: %s", r.body)
		}
	}
	if code := waitExit(t, self, 15*time.Second); code != 0 {
		t.Fatalf("removed node exited %d", code)
	}
}
