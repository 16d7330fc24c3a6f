package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"go.uber.org/zap"
)

func (f fakeAuth) Roles(token string) []Role { return f[token] }

// GET /mgmt/whoami: every role without tokens; with them, the caller's
// token's roles (401 without a valid one). The console's assets are open.
func TestWhoamiAndUI(t *testing.T) {
	ui := http.FileServerFS(fstest.MapFS{"index.html": {Data: []byte("<p>console</p>")}})
	who := func(h http.Handler, token string) (int, string) {
		req := httptest.NewRequest(http.MethodGet, "/mgmt/whoami", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	open := NewRouter(&fakeQueue{}, nil, zap.NewNop(), Options{UI: ui})
	if code, body := who(open, ""); code != 200 || body != `{"auth":false,"roles":["producer","consumer","admin"]}` {
		t.Fatalf("no tokens: %d %s", code, body)
	}
	guarded := NewRouter(&fakeQueue{}, nil, zap.NewNop(), Options{UI: ui, Auth: fakeAuth{"c": {RoleConsumer}}})
	if code, body := who(guarded, "c"); code != 200 || body != `{"auth":true,"roles":["consumer"]}` {
		t.Fatalf("a consumer: %d %s", code, body)
	}
	if code, _ := who(guarded, ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	rec := httptest.NewRecorder()
	guarded.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "console") {
		t.Fatalf("/ui/ with tokens on and none given: %d %s", rec.Code, rec.Body)
	}
}

// GET /mgmt/cluster asks every member's API for its status and readiness,
// with the caller's token; a member that does not answer shows why.
func TestClusterView(t *testing.T) {
	var gotAuth string
	var asked atomic.Int32
	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/mgmt/status":
			asked.Add(1)
			w.Write([]byte(`{"id":1,"term":3,"leader":1,"commit":9,"applied":9}`))
		case "/readyz":
			w.Write([]byte(`{"status":"ready"}`))
		}
	}))
	defer member.Close()
	c := &fakeCluster{nodes: func(context.Context) (Nodes, error) {
		return Nodes{Leader: 1, Nodes: []Node{{ID: 1, APIURL: member.URL, IsLeader: true}, {ID: 2, APIURL: "http://127.0.0.1:1"}, {ID: 3}}}, nil
	}}
	h := NewRouter(&fakeQueue{}, c, zap.NewNop(), Options{})
	var rec *httptest.ResponseRecorder
	start := time.Now()
	for range 5 { // five consoles polling at once: the members are asked once
		req := httptest.NewRequest(http.MethodGet, "/mgmt/cluster", nil)
		req.Header.Set("Authorization", "Bearer t")
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
	if n, most := asked.Load(), 1+int32(time.Since(start)/time.Second); n > most { // once a second, however slow the machine
		t.Fatalf("a member was asked %d times in five calls over %s", n, time.Since(start))
	}
	var out struct {
		Leader  uint64
		Members []MemberView
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || len(out.Members) != 3 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	m1, m2, m3 := out.Members[0], out.Members[1], out.Members[2]
	if !m1.Ready || m1.Status == nil || m1.Status.Commit != 9 || gotAuth != "Bearer t" {
		t.Fatalf("member 1: %+v (auth %q)", m1, gotAuth)
	}
	if m2.Ready || m2.Status != nil || m2.Error == "" || m3.Error == "" {
		t.Fatalf("members 2 and 3: %+v %+v", m2, m3)
	}
}
