package raftnode

import (
	"bytes"
	"context"

	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// membersPath answers, on the peer port, what this node knows of its
// cluster: to nodes joining, and to nodes deciding whether to bootstrap.
const membersPath = "/raftq/members"

// membersAnswer is the body of GET /raftq/members.
type membersAnswer struct {
	// ID is the answering node's id.
	ID uint64 `json:"id"`
	// Bootstrapped is false while the answering node has no data dir yet:
	// it waits to bootstrap or to join, and knows nothing of any cluster.
	Bootstrapped bool `json:"bootstrapped"`
	// ClusterID (hex, as in rafthttp's X-Etcd-Cluster-ID) is the node's
	// cluster; for a node not bootstrapped, the id it will bootstrap with
	// (none when joining).
	ClusterID string   `json:"cluster_id,omitempty"`
	Members   []Member `json:"members,omitempty"`
	// Started lists the members known to have run: they published their
	// API URL (applied, or still in the unapplied log).
	Started []uint64 `json:"started,omitempty"`
	Removed []uint64 `json:"removed,omitempty"`
}

// PeerPort serves the peer listener for the whole life of the process:
// before the node exists it answers GET /raftq/members (after Discover:
// "not bootstrapped yet"; before it: 503, as a node replaying its data dir
// knows nothing yet), and 503 to rafthttp; after Attach, the node's
// PeerHandler.
type PeerPort struct {
	cfg     Config
	lg      *zap.Logger
	fresh   atomic.Bool
	handler atomic.Pointer[http.Handler]
}

// NewPeerPort checks cfg and returns the peer port of the node it
// configures.
func NewPeerPort(cfg Config) (*PeerPort, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &PeerPort{cfg: cfg, lg: cfg.Logger.Named("bootstrap")}, nil
}

// Attach hands the port to the node from now on.
func (p *PeerPort) Attach(n *Node) {
	h := n.PeerHandler()
	p.handler.Store(&h)
}

func (p *PeerPort) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := p.handler.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet || r.URL.Path != membersPath || !p.fresh.Load() {
		http.Error(w, "raftq: node starting", http.StatusServiceUnavailable)
		return
	}
	a := membersAnswer{ID: p.cfg.ID}
	if !p.cfg.Join {
		a.ClusterID = types.ID(ClusterIDFor(p.cfg.ClusterToken, p.cfg.Peers)).String()
	}
	writeJSON(w, a, p.lg)
}

// writeJSON answers v, logging what could not be answered.
func writeJSON(w http.ResponseWriter, v any, lg *zap.Logger) {
	b, err := json.Marshal(v)
	if err != nil {
		lg.Error("cannot encode answer", zap.Error(err))
		http.Error(w, "raftq: cannot encode answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(b); err != nil {
		lg.Warn("cannot send answer to peer", zap.Error(err))
	}
}

func (n *Node) serveMembers(w http.ResponseWriter, r *http.Request) {
	n.mu.RLock()
	st := n.members.state()
	a := membersAnswer{ID: n.cfg.ID, Bootstrapped: true, ClusterID: types.ID(n.store.ClusterID()).String(),
		Members: st.Members, Removed: st.Removed, Started: n.startedLocked()}
	n.mu.RUnlock()
	writeJSON(w, a, n.lg)
}

// startedLocked lists the members known to have run; n.mu is held.
func (n *Node) startedLocked() []uint64 {
	var ids []uint64
	for id, m := range n.members.members {
		if m.APIURL != "" && !n.publishedInLog[id] {
			ids = append(ids, id)
		}
	}
	for id := range n.publishedInLog {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// notePublishes records who published an API URL in entries appended to
// the log but maybe not applied yet: such a member has run, whether or not
// the entry commits. It lets a peer that lost its data dir be recognised
// by a node that has its publish only in the log tail (a restart
// replaying, a commit index not yet learnt).
func (n *Node) notePublishes(ents []*raftpb.Entry) {
	for _, e := range ents {
		data := e.GetData()
		if e.GetType() != raftpb.EntryNormal || len(data) <= 8 || !isInternalEntry(data) {
			continue
		}
		var c internalCommand
		if json.Unmarshal(data[8:], &c) != nil || c.Publish == nil {
			continue
		}
		n.mu.Lock()
		n.publishedInLog[c.Publish.ID] = true
		n.mu.Unlock()
	}
}

// peerReply is one peer's answer to GET /raftq/members, or why there was
// none.
type peerReply struct {
	url       string
	err       error
	answer    membersAnswer
	clusterID uint64 // parsed; 0 when the answer names none
}

func (r peerReply) started(id uint64) bool {
	return slices.Contains(r.answer.Started, id) || slices.Contains(r.answer.Removed, id)
}

// askPeers asks every URL for its members at once and returns the replies
// in the order of urls.
func askPeers(ctx context.Context, urls []string, cfg Config) []peerReply {
	hc := peerClient(cfg)
	defer hc.CloseIdleConnections()
	out := make([]peerReply, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { out[i] = askPeer(ctx, hc, u) })
	}
	wg.Wait()
	return out
}

// peerClient asks peers as rafthttp reaches them: from PeerLocalAddr, with
// the peer TLS (its certificate, and the peers' CA).
func peerClient(cfg Config) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if cfg.PeerLocalAddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.PeerLocalAddr)}
	}
	tr := &http.Transport{DialContext: d.DialContext}
	if !cfg.PeerTLS.Empty() {
		tc, err := cfg.PeerTLS.ClientConfig()
		if err == nil { // checked by Config.Validate
			tr.TLSClientConfig = tc
		}
	}
	return &http.Client{Timeout: 3 * time.Second, Transport: tr}
}

func askPeer(ctx context.Context, hc *http.Client, u string) peerReply {
	r := peerReply{url: u}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(u, "/")+membersPath, nil)
	if err != nil {
		r.err = err
		return r
	}
	resp, err := hc.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(io.LimitReader(resp.Body, 16<<20)); err != nil {
		r.err = fmt.Errorf("%s: read answer: %w", u, err)
		return r
	}
	if resp.StatusCode != http.StatusOK {
		r.err = fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(body.String()))
		return r
	}
	r.answer, r.clusterID, r.err = decodeMembersAnswer(body.Bytes())
	if r.err != nil {
		r.err = fmt.Errorf("%s: %w", u, r.err)
	}
	return r
}

// decodeMembersAnswer reads an answer, or the bare member list that nodes
// of before cluster ids answer (their cluster id is LegacyClusterID).
func decodeMembersAnswer(b []byte) (membersAnswer, uint64, error) {
	var a membersAnswer
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &a.Members); err != nil {
			return a, 0, fmt.Errorf("decode member list: %w", err)
		}
		a.Bootstrapped = true
		for _, m := range a.Members {
			if m.APIURL != "" {
				a.Started = append(a.Started, m.ID)
			}
		}
		return a, LegacyClusterID, nil
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, 0, fmt.Errorf("decode members answer: %w", err)
	}
	if a.ClusterID == "" {
		return a, 0, nil
	}
	cid, err := types.IDFromString(a.ClusterID)
	if err != nil {
		return a, 0, fmt.Errorf("cluster id %q: %w", a.ClusterID, err)
	}
	return a, uint64(cid), nil
}

// fetchMembers asks the peers for the membership until one of this
// node's cluster answers, so that a joining node can answer the leader
// before it has applied anything.
func (n *Node) fetchMembers(ctx context.Context) ([]Member, error) {
	var lastLog time.Time
	for {
		var errs []string
		for _, r := range askPeers(ctx, n.cfg.Peers, n.cfg) {
			switch {
			case r.err != nil:
				errs = append(errs, r.err.Error())
			case r.answer.Bootstrapped && r.clusterID == n.store.ClusterID():
				return r.answer.Members, nil
			}
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			n.lg.Info("no peer of this cluster told the membership yet; retrying",
				zap.String("cluster-id", types.ID(n.store.ClusterID()).String()), zap.Strings("errors", errs))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("raftnode: no peer told the membership: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// checkCluster explains, once in a while for each sender, the requests of
// another cluster that rafthttp refuses (412 "cluster ID mismatch", on
// the pipeline, stream and snapshot paths alike): the node that sends
// them was given a peer URL of this cluster.
func (n *Node) checkCluster(next http.Handler) http.Handler {
	want := types.ID(n.store.ClusterID()).String()
	var mu sync.Mutex
	logged := map[string]time.Time{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-Etcd-Cluster-ID")
		if got != want && strings.HasPrefix(r.URL.Path, rafthttp.RaftPrefix) && r.URL.Path != rafthttp.ProbingPrefix {
			from := r.Header.Get("X-Server-From")
			key, now := from+"/"+got, time.Now()
			mu.Lock()
			if len(logged) > 1000 {
				clear(logged)
			}
			quiet := now.Sub(logged[key]) < 30*time.Second
			if !quiet {
				logged[key] = now
			}
			mu.Unlock()
			if !quiet {
				n.lg.Warn("refusing a peer of another cluster (cluster ID mismatch): a node was given a peer URL of "+
					"this cluster; check its --cluster and --cluster-token",
					zap.String("remote-addr", r.RemoteAddr), zap.String("remote-member-id", from),
					zap.String("remote-cluster-id", got), zap.String("cluster-id", want), zap.String("path", r.URL.Path))
			}
		}
		next.ServeHTTP(w, r)
	})
}
