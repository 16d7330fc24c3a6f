package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The routes the web console reads besides the API's own: each member's
// status and readiness in one answer, the roles of the caller's token,
// and every queue's stats at once.

// MemberView is a member as GET /mgmt/cluster shows it: the membership's
// record, and what its own client API answered (Status nil, Error set,
// when it did not).
type MemberView struct {
	Node
	Status *NodeStatus `json:"status"`
	Ready  bool        `json:"ready"`
	Error  string      `json:"error,omitempty"`
}

// memberTimeout bounds the questions GET /mgmt/cluster asks each member.
const memberTimeout = 2 * time.Second

// cluster answers GET /mgmt/cluster: the members, each with the status
// and readiness its own API gives (asked at once, with the caller's
// token, within memberTimeout).
func (a *api) cluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.ctx(r)
	defer cancel()
	ns, err := a.c.Nodes(ctx)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]MemberView, len(ns.Nodes))
	var wg sync.WaitGroup
	for i, n := range ns.Nodes {
		out[i].Node = n
		if n.APIURL == "" {
			out[i].Error = "it has not published its API URL yet"
			continue
		}
		wg.Go(func() { a.askMember(r.Context(), r.Header.Get("Authorization"), &out[i]) })
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, struct {
		Leader  uint64       `json:"leader"`
		Members []MemberView `json:"members"`
	}{ns.Leader, out})
}

// askMember fills m's status and readiness from its API.
func (a *api) askMember(ctx context.Context, auth string, m *MemberView) {
	ctx, cancel := context.WithTimeout(ctx, memberTimeout)
	defer cancel()
	hc := &http.Client{Transport: a.opts.Forward}
	get := func(path string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(m.APIURL, "/")+path, nil)
		if err != nil {
			return 0, nil, err
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, b, err
	}
	code, b, err := get("/mgmt/status")
	switch {
	case err != nil:
		m.Error = err.Error()
		return
	case code != http.StatusOK:
		m.Error = fmt.Sprintf("status: %d %s", code, strings.TrimSpace(string(b)))
		return
	}
	var st NodeStatus
	if err := json.Unmarshal(b, &st); err != nil {
		m.Error = "status: " + err.Error()
		return
	}
	m.Status = &st
	code, b, err = get("/readyz")
	m.Ready = err == nil && code == http.StatusOK
	if !m.Ready && err == nil {
		m.Error = "not ready: " + strings.TrimSpace(string(b))
	}
}

// RoleLister is what an Authorizer may also do: say which roles a token
// holds (GET /mgmt/whoami), for a console to show only what it may do.
type RoleLister interface {
	Roles(token string) []Role
}

// whoami answers GET /mgmt/whoami: whether tokens are on, and the roles
// the caller's token holds (every role when tokens are off).
func (a *api) whoami(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Auth  bool   `json:"auth"`
		Roles []Role `json:"roles"`
	}{Roles: []Role{RoleProducer, RoleConsumer, RoleAdmin}}
	if a.opts.Auth != nil {
		out.Auth, out.Roles = true, []Role{}
		if rl, ok := a.opts.Auth.(RoleLister); ok {
			out.Roles = append(out.Roles, rl.Roles(bearer(r))...)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// queueStats answers GET /queues?stats=true: every queue's stats, sorted
// by name, read at once.
func (a *api) queueStats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.ctx(r)
	defer cancel()
	st, err := a.q.AllStats(ctx)
	if err != nil {
		a.fail(w, err)
		return
	}
	if st == nil {
		st = []QueueStats{}
	}
	writeJSON(w, http.StatusOK, struct {
		Queues []QueueStats `json:"queues"`
	}{st})
}
