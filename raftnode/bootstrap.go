package raftnode

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.uber.org/zap"
)

// Errors of Discover: the node must not start.
var (
	// ErrAlreadyBootstrapped: a peer knows this node's id as a member that
	// has run (or was removed), so this node's data dir was lost. Started
	// again with an empty log and no vote record it could vote for a node
	// that lacks writes it acknowledged, undoing them. As etcd refuses
	// ("member ... has already been bootstrapped").
	ErrAlreadyBootstrapped = errors.New("raftnode: this member has already been bootstrapped")
	// ErrOtherCluster: a peer has, or would bootstrap, another cluster
	// than this node's flags give, or answers under another id.
	ErrOtherCluster = errors.New("raftnode: a peer belongs to another cluster")
)

// LegacyClusterID is the cluster id of every raftq cluster created before
// cluster ids were derived (wal.LegacyClusterID is the same value): nodes
// on such WALs keep it, so they go on working with their old peers.
const LegacyClusterID uint64 = 0x7261667471

// ClusterIDFor derives the id of a cluster bootstrapped from these initial
// peer URLs (in id order) and token, as etcd derives its own from
// --initial-cluster and --initial-cluster-token: the first 8 bytes of the
// SHA-256 of the token and each URL, NUL-separated; never 0.
func ClusterIDFor(token string, peerURLs []string) uint64 {
	h := sha256.New()
	h.Write([]byte(token))
	for _, u := range peerURLs {
		h.Write([]byte{0})
		h.Write([]byte(u))
	}
	if id := binary.BigEndian.Uint64(h.Sum(nil)); id != 0 {
		return id
	}
	return 1
}

// peersToHear is how many of the other initial members a node of an
// initial membership of n must hear from before it bootstraps: enough
// that every quorum of the n overlaps them in a node other than this one.
// This node's own word counts for nothing, as it may be the one whose
// disk was replaced: a quorum that committed a write with its help still
// holds one of the peers heard. (A single node has no one to ask.)
func peersToHear(n int) int {
	if n <= 1 {
		return 0
	}
	return (n + 1) / 2
}

// Discover decides the cluster id of a node whose data dir holds no WAL
// (wal.Open calls it before creating one); from its call on, the peer port
// answers that this node is not bootstrapped yet. It blocks, asking the
// peers again every second and logging why it waits, until it decides,
// refuses (ErrAlreadyBootstrapped, ErrOtherCluster) or ctx ends.
//
// A joining node takes the id of the cluster its peers answer with. A
// bootstrapping node takes ClusterIDFor(ClusterToken, Peers) once it has
// heard from peersToHear(len(Peers)) other initial members, each either
// not bootstrapped yet or in that same cluster, and none knowing this id
// as a member that has run or was removed; an unreachable peer is not
// heard, so while too many are down the node waits.
func (p *PeerPort) Discover(ctx context.Context) (uint64, error) {
	p.fresh.Store(true)
	if p.cfg.Join {
		return p.discoverJoin(ctx)
	}
	return p.discoverBootstrap(ctx)
}

func (p *PeerPort) discoverBootstrap(ctx context.Context) (uint64, error) {
	own := ClusterIDFor(p.cfg.ClusterToken, p.cfg.Peers)
	need := peersToHear(len(p.cfg.Peers))
	heard := map[uint64]bool{}
	var others []string
	var ids []uint64
	for i, u := range p.cfg.Peers {
		if id := uint64(i + 1); id != p.cfg.ID {
			others, ids = append(others, u), append(ids, id)
		}
	}
	var lastLog time.Time
	for {
		if len(heard) >= need {
			p.lg.Info("bootstrapping a new cluster", zap.String("cluster-id", types.ID(own).String()),
				zap.Int("peers-heard", len(heard)), zap.Strings("peers", p.cfg.Peers))
			return own, nil
		}
		var unreachable []string
		for i, r := range askPeers(ctx, others, p.cfg) {
			if r.err != nil {
				unreachable = append(unreachable, r.err.Error())
				continue
			}
			if err := p.checkBootstrap(r, ids[i], own); err != nil {
				return 0, err
			}
			heard[ids[i]] = true
		}
		if len(heard) >= need {
			continue
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			p.lg.Info("empty data dir: waiting to hear from enough initial members before bootstrapping",
				zap.Int("heard", len(heard)), zap.Int("need", need), zap.Strings("unreachable", unreachable))
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return 0, fmt.Errorf("raftnode: waiting for peers before bootstrapping: %w", err)
		}
	}
}

// checkBootstrap says whether reply r, from the initial member id, lets
// this node bootstrap cluster own.
func (p *PeerPort) checkBootstrap(r peerReply, id, own uint64) error {
	a, self := r.answer, p.cfg.ID
	if r.started(self) {
		return alreadyBootstrapped(r, self)
	}
	if a.ID != 0 && a.ID != id {
		return fmt.Errorf("%w: %s answers as node %d, but --cluster lists it as node %d: "+
			"give every node the same --cluster, in id order", ErrOtherCluster, r.url, a.ID, id)
	}
	switch {
	case r.clusterID == 0 || r.clusterID == own:
		return nil
	case a.Bootstrapped:
		return fmt.Errorf("%w: %s (node %d) is in cluster %s, but this node's --cluster and --cluster-token "+
			"make cluster %s: give every node of a cluster the same --cluster (in id order) and --cluster-token. "+
			"(A member of a cluster created before cluster ids, %s, that never ran cannot bootstrap into it: "+
			"remove it there and add it again under a new id, started with --join.)",
			ErrOtherCluster, r.url, a.ID, a.ClusterID, types.ID(own), types.ID(LegacyClusterID))
	default:
		return fmt.Errorf("%w: %s (node %d) would bootstrap cluster %s, this node cluster %s: "+
			"give every node of a new cluster the same --cluster (in id order) and --cluster-token",
			ErrOtherCluster, r.url, a.ID, a.ClusterID, types.ID(own))
	}
}

func alreadyBootstrapped(r peerReply, self uint64) error {
	what := "as a member that has already run"
	if slices.Contains(r.answer.Removed, self) {
		what = "as removed"
	}
	return fmt.Errorf("%w: %s (node %d, cluster %s) knows node %d %s, so this node's data dir was lost or replaced; "+
		"starting it again with an empty log could undo writes it acknowledged. Remove member %d "+
		"(DELETE /mgmt/nodes/%d; ids are never reused), then add this machine under a new id "+
		"(POST /mgmt/nodes) and start it with that --id and --join",
		ErrAlreadyBootstrapped, r.url, r.answer.ID, r.answer.ClusterID, self, what, self, self)
}

func (p *PeerPort) discoverJoin(ctx context.Context) (uint64, error) {
	var lastLog time.Time
	for {
		var unreachable []string
		clusters := map[uint64][]string{}
		for _, r := range askPeers(ctx, p.cfg.Peers, p.cfg) {
			switch {
			case r.err != nil:
				unreachable = append(unreachable, r.err.Error())
			case r.answer.ID == p.cfg.ID || !r.answer.Bootstrapped:
				// itself (its URL may be in --cluster), or a node that
				// knows no cluster yet
			case r.started(p.cfg.ID):
				return 0, alreadyBootstrapped(r, p.cfg.ID)
			default:
				clusters[r.clusterID] = append(clusters[r.clusterID], r.url)
			}
		}
		if len(clusters) > 1 {
			return 0, fmt.Errorf("%w: the peers in --cluster belong to different clusters: %v", ErrOtherCluster, clusters)
		}
		for cid, urls := range clusters {
			p.lg.Info("joining cluster", zap.String("cluster-id", types.ID(cid).String()), zap.Strings("told-by", urls))
			return cid, nil
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			p.lg.Info("empty data dir: waiting for a peer of the cluster to join", zap.Strings("unreachable", unreachable))
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return 0, fmt.Errorf("raftnode: waiting for a peer of the cluster to join: %w", err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
