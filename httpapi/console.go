package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
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

// clusterCache keeps GET /mgmt/cluster's answer for a second, by the
// caller's Authorization header: however many consoles poll, a node asks
// its members at most once a second per token.
type clusterCache struct {
	mu      sync.Mutex
	entries map[string]*clusterEntry
}

type clusterEntry struct {
	once sync.Once
	at   time.Time
	body any
	err  error
}

// get returns the answer for auth no older than a second, computing it
// (once, whoever asks meanwhile) with fn.
func (c *clusterCache) get(auth string, fn func() (any, error)) (any, error) {
	c.mu.Lock()
	e := c.entries[auth]
	if e == nil || time.Since(e.at) > time.Second {
		if c.entries == nil || len(c.entries) > 64 {
			c.entries = map[string]*clusterEntry{}
		}
		e = &clusterEntry{at: time.Now()}
		c.entries[auth] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.body, e.err = fn() })
	return e.body, e.err
}

// cluster answers GET /mgmt/cluster: the members, each with the status
// and readiness its own API gives (asked at once within memberTimeout,
// with the caller's token; not over plain HTTP when the caller came over
// TLS).
func (a *api) cluster(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	out, err := a.clusterView.get(auth, func() (any, error) { return a.askMembers(r, auth) })
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) askMembers(r *http.Request, auth string) (any, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), a.opts.RequestTimeout)
	defer cancel()
	ns, err := a.c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]MemberView, len(ns.Nodes))
	var wg sync.WaitGroup
	for i, n := range ns.Nodes {
		out[i].Node = n
		if n.APIURL == "" {
			out[i].Error = "it has not published its API URL yet"
			continue
		}
		token := auth
		if r.TLS != nil && strings.HasPrefix(n.APIURL, "http://") {
			token = "" // the caller's token does not leave TLS
		}
		wg.Go(func() { a.askMember(ctx, token, &out[i]) })
	}
	wg.Wait()
	return struct {
		Leader  uint64       `json:"leader"`
		Members []MemberView `json:"members"`
	}{ns.Leader, out}, nil
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
	short := func(b []byte) string { // an answer shown to the caller: its start only
		s := strings.TrimSpace(string(b))
		if len(s) > 200 {
			s = s[:200] + "…"
		}
		return s
	}
	code, b, err := get("/mgmt/status")
	switch {
	case err != nil:
		m.Error = err.Error()
		return
	case code != http.StatusOK:
		m.Error = fmt.Sprintf("status: %d %s", code, short(b))
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
		m.Error = "not ready: " + short(b)
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

// MaxStatsPage is the most queues one GET /queues?stats=true describes.
const MaxStatsPage = 1000

// queueStats answers GET /queues?stats=true[&limit=N][&after=NAME]: the
// stats of up to N queues (default and most MaxStatsPage) by name after
// NAME, read at once; "next" names the last one when more follow.
func (a *api) queueStats(w http.ResponseWriter, r *http.Request) {
	limit := MaxStatsPage
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxStatsPage {
			a.fail(w, fmt.Errorf("%w: limit=%q must be 1 to %d", ErrInvalid, s, MaxStatsPage))
			return
		}
		limit = n
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	st, more, err := a.q.AllStats(ctx, r.URL.Query().Get("after"), limit)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := struct {
		Queues []QueueStats `json:"queues"`
		Next   string       `json:"next,omitempty"`
	}{Queues: st}
	if out.Queues == nil {
		out.Queues = []QueueStats{}
	}
	if more && len(st) > 0 {
		out.Next = st[len(st)-1].Queue
	}
	writeJSON(w, http.StatusOK, out)
}
