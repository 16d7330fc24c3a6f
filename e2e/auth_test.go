package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// authCall is one request with a token ("" for none).
func authCall(t *testing.T, method, u, token, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
		if !strings.HasPrefix(body, "{") {
			req.Header.Set("Content-Type", "text/plain")
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("%s %s: 401 without WWW-Authenticate", method, u)
	}
	return resp.StatusCode
}

// With --auth-token-file every route asks for its role: 401 without a
// valid token, 403 with a token lacking the role, served with it; health
// and readiness stay open, /metrics too unless --metrics-auth. A
// membership change sent to a follower is forwarded to the leader with
// its token. SIGHUP rereads the file.
func TestAuthTokens(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(file, []byte("# test tokens\nP producer\nC consumer\nA admin\nR producer,consumer # both\n"), 0o600)
	c := prepareCluster(t, 3, nil, "--auth-token-file", file)
	for _, p := range c.procs {
		u, _ := url.Parse(p.api)
		harnessTokens.hosts.Store(u.Host, "A")
	}
	c.startAll()
	l := c.leader()
	f := c.procs[(l+1)%3] // a follower
	api := f.api
	if s := authCall(t, http.MethodPut, api+"/queues/q", "P", "m"); s != http.StatusCreated {
		t.Fatalf("enqueue as producer: %d", s)
	}
	cases := []struct {
		method, path, body string
		role               string // the token that may; "any" for any valid one; "open" for none
	}{
		{"GET", "/healthz", "", "open"},
		{"GET", "/readyz", "", "open"},
		{"GET", "/metrics", "", "open"},
		{"GET", "/queues", "", "any"},
		{"GET", "/mgmt/nodes", "", "any"},
		{"GET", "/mgmt/status", "", "any"},
		{"GET", "/mgmt/limits", "", "any"},
		{"GET", "/queues/q/stats", "", "any"},
		{"PUT", "/queues/q", "m", "P"},
		{"POST", "/queues/q", "m", "P"},
		{"POST", "/queues/q/batch", `{"messages":[{"body":"b"}]}`, "P"},
		{"GET", "/queues/q", "", "C"},
		{"POST", "/queues/q/leases?ttl=60s", "", "C"},
		{"GET", "/queues/q/messages", "", "C"},
		{"DELETE", "/queues/q/messages/999?lease=1.1", "", "C"},
		{"POST", "/queues/q/messages/999/release?lease=1.1", "", "C"},
		{"POST", "/queues/q/messages/999/extend?lease=1.1&ttl=10s", "", "C"},
		{"POST", "/queues/q/acks", `{"acks":[{"id":999,"lease":"1.1"}]}`, "C"},
		{"POST", "/queues/q/releases", `{"releases":[{"id":999,"lease":"1.1"}]}`, "C"},
		{"PUT", "/queues/q/config", `{"max_deliveries":9}`, "A"},
		{"POST", "/queues/gone/purge", "", "A"},
		{"DELETE", "/queues/gone", "", "A"},
		{"PUT", "/mgmt/limits", `{"max_queues":9000}`, "A"},
		{"DELETE", "/mgmt/alarms/9", "", "A"},
		{"POST", "/mgmt/leader", fmt.Sprintf(`{"id":%d}`, c.procs[l].id), "A"}, // forwarded to the leader
		{"POST", "/mgmt/nodes", `{"id":9,"peer_url":"http://127.0.0.1:1"}`, "A"},
		{"DELETE", "/mgmt/nodes/9", "", "A"},
		{"POST", "/mgmt/nodes/9/promote", "", "A"},
		{"GET", "/debug/state", "", "A"},
		{"GET", "/debug/counters", "", "A"},
	}
	for _, tc := range cases {
		u := api + tc.path
		if tc.role == "open" {
			if s := authCall(t, tc.method, u, "", tc.body); s != http.StatusOK {
				t.Errorf("%s %s without a token: %d, want 200", tc.method, tc.path, s)
			}
			continue
		}
		if s := authCall(t, tc.method, u, "", tc.body); s != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d, want 401", tc.method, tc.path, s)
		}
		if s := authCall(t, tc.method, u, "nope", tc.body); s != http.StatusUnauthorized {
			t.Errorf("%s %s with an unknown token: %d, want 401", tc.method, tc.path, s)
		}
		for _, tok := range []string{"P", "C", "A"} {
			s := authCall(t, tc.method, u, tok, tc.body)
			allowed := tc.role == "any" || tok == tc.role
			switch {
			case allowed && (s == http.StatusUnauthorized || s == http.StatusForbidden):
				t.Errorf("%s %s as %s: %d, want it served", tc.method, tc.path, tok, s)
			case !allowed && s != http.StatusForbidden:
				t.Errorf("%s %s as %s: %d, want 403", tc.method, tc.path, tok, s)
			}
		}
	}
	// A token with two roles has both.
	if s := authCall(t, "PUT", api+"/queues/r", "R", "m"); s != http.StatusCreated {
		t.Errorf("enqueue as producer,consumer: %d", s)
	}
	if s := authCall(t, "GET", api+"/queues/r", "R", ""); s != http.StatusOK {
		t.Errorf("dequeue as producer,consumer: %d", s)
	}
	// SIGHUP rereads the file on that node.
	os.WriteFile(file, []byte("P2 producer\nA admin\n"), 0o600)
	f.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for authCall(t, "PUT", api+"/queues/q", "P2", "m") != http.StatusCreated {
		if time.Now().After(deadline) {
			t.Fatal("a token added to the file is not taken 30 s after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := authCall(t, "PUT", api+"/queues/q", "P", "m"); s != http.StatusUnauthorized {
		t.Errorf("a token removed from the file: %d, want 401", s)
	}
	if !f.running() {
		t.Fatal("SIGHUP stopped the node")
	}
}

// --metrics-auth puts /metrics behind any valid token.
func TestMetricsAuth(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(file, []byte("C consumer\n"), 0o600)
	c := prepareCluster(t, 1, nil, "--auth-token-file", file, "--metrics-auth")
	u, _ := url.Parse(c.procs[0].api)
	harnessTokens.hosts.Store(u.Host, "C")
	c.startAll()
	if s := authCall(t, "GET", c.procs[0].api+"/metrics", "", ""); s != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d", s)
	}
	if s := authCall(t, "GET", c.procs[0].api+"/metrics", "C", ""); s != http.StatusOK {
		t.Errorf("/metrics with a token: %d", s)
	}
	if s := authCall(t, "GET", c.procs[0].api+"/readyz", "", ""); s != http.StatusOK {
		t.Errorf("/readyz without a token: %d", s)
	}
}
