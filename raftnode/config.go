package raftnode

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.uber.org/zap"
)

// Config says how a Node runs. cmd/raftq fills it from flags.
type Config struct {
	// ID is this node's id, 1-based; never reused for another node.
	ID uint64
	// Peers are the peer URLs of the initial members, in id order: Peers[i]
	// belongs to node i+1. On a restart they only serve to reach peers not
	// yet known from the data dir.
	Peers []string
	// ClusterToken and Peers name a new cluster: its id is derived from
	// both (ClusterIDFor), so clusters bootstrapped from other URLs or
	// another token refuse each other's peers. Used only when the data dir
	// holds no WAL yet.
	ClusterToken string
	// Join starts the node as a new member of a running cluster: it does not
	// bootstrap a log and waits to be sent one.
	Join bool
	// SnapshotCount is how many applied entries trigger a new snapshot.
	SnapshotCount uint64
	// SnapshotBytes is how many bytes of applied entries trigger a new
	// snapshot even before SnapshotCount entries: the log held in memory
	// is bounded in bytes too, whatever the size of entries (0: no bound).
	SnapshotBytes uint64
	// TickInterval is the raft tick. An election times out after
	// ElectionTicks ticks without a heartbeat; a heartbeat is sent every tick.
	TickInterval  time.Duration
	ElectionTicks int
	// APIURL is this node's client API URL, published through the log so
	// that every node can list every member's API ("" publishes nothing).
	APIURL string
	// PeerLocalAddr, if set, is the local IP address outgoing peer
	// connections are made from (etcd's SetMemberLocalAddr): on a host
	// with several addresses, peers see this node come from the address
	// they expect. The fault suite uses it to tell nodes apart on loopback.
	PeerLocalAddr string
	// PeerTLS, when not empty, is the peers' mutual TLS (etcd's
	// --peer-cert-file, --peer-key-file, --peer-trusted-ca-file): rafthttp
	// and the bootstrap and join questions present this certificate and
	// trust only peers whose certificate the CA signed; Peers are https.
	// The peer listener's side is PeerTLS.ServerConfig(), in cmd/raftq.
	PeerTLS transport.TLSInfo
	// MaxApplyBacklog bounds how far applying may lag behind the commit
	// index on this node (etcd's maxGapBetweenApplyAndCommitIndex): while
	// commit − applied is above it, Propose refuses new proposals at once
	// with ErrTooManyRequests instead of queueing them in memory. 0 means
	// DefaultMaxApplyBacklog.
	MaxApplyBacklog uint64
	// MaxUncommittedBytes is raft's MaxUncommittedEntriesSize: a leader
	// holding this many bytes of entries not yet committed drops new
	// proposals, which Propose then refuses with ErrTooManyRequests. 0
	// means DefaultMaxUncommittedBytes.
	MaxUncommittedBytes uint64
	// MaxGroupsInFlight is how many groups of proposals (see Propose) this
	// node may have on their way at once; 0 means DefaultMaxGroupsInFlight.
	MaxGroupsInFlight int
	// NoGroupCommit proposes every command as an entry of its own, as
	// before group commit: for tests that count entries one per write.
	NoGroupCommit bool
	// Logger receives structured logs; raft's own logs are adapted into it.
	Logger *zap.Logger
}

// Defaults used by cmd/raftq.
const (
	DefaultSnapshotCount = 10000
	DefaultSnapshotBytes = 32 << 20
	DefaultTickInterval  = 100 * time.Millisecond
	DefaultElectionTicks = 10
	DefaultClusterToken  = "raftq-cluster"
	// DefaultMaxApplyBacklog is etcd's bound on commit − applied.
	DefaultMaxApplyBacklog = 5000
	// DefaultMaxUncommittedBytes bounds what a leader holds uncommitted.
	DefaultMaxUncommittedBytes = 64 << 20
)

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.ID == 0 {
		return errors.New("raftnode: id must be 1 or more")
	}
	if !c.Join && c.ID > uint64(len(c.Peers)) {
		return fmt.Errorf("raftnode: id %d has no peer URL among the %d initial members", c.ID, len(c.Peers))
	}
	for _, p := range c.Peers {
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("raftnode: peer URL %q must look like http://host:port", p)
		}
	}
	if c.SnapshotCount == 0 {
		return errors.New("raftnode: snapshot count must be 1 or more")
	}
	if c.TickInterval <= 0 || c.ElectionTicks < 3 {
		return errors.New("raftnode: tick interval must be positive and election ticks at least 3")
	}
	if err := c.validatePeerTLS(); err != nil {
		return err
	}
	if c.PeerLocalAddr != "" && net.ParseIP(c.PeerLocalAddr) == nil {
		return fmt.Errorf("raftnode: peer local address %q is not an IP address", c.PeerLocalAddr)
	}
	if c.Logger == nil {
		return errors.New("raftnode: a logger is required")
	}
	return nil
}

// validatePeerTLS: with peer TLS, a certificate, its key and the CA, and
// every peer URL https; without, every peer URL http.
func (c Config) validatePeerTLS() error {
	scheme := "http"
	if c.PeerTLS.Empty() && c.PeerTLS.TrustedCAFile != "" {
		return errors.New("raftnode: a peer CA without a peer certificate and key would leave peers in plain HTTP")
	}
	if !c.PeerTLS.Empty() {
		scheme = "https"
		t := c.PeerTLS
		if t.CertFile == "" || t.KeyFile == "" || t.TrustedCAFile == "" {
			return errors.New("raftnode: peer TLS needs a certificate, its key and the CA that signs the peers' certificates")
		}
		if _, err := t.ClientConfig(); err != nil {
			return fmt.Errorf("raftnode: peer TLS: %w", err)
		}
	}
	for _, p := range c.Peers {
		if u, err := url.Parse(p); err == nil && u.Scheme != scheme {
			return fmt.Errorf("raftnode: peer URL %q: peer URLs are %s:// (https exactly when peer TLS is set)", p, scheme)
		}
	}
	return nil
}

// peerTLSInfo is PeerTLS for rafthttp: peers must present certificates,
// and connections leave from PeerLocalAddr.
func (c Config) peerTLSInfo() transport.TLSInfo {
	t := c.PeerTLS
	if !t.Empty() {
		t.ClientCertAuth = true
	}
	t.LocalAddr = c.PeerLocalAddr
	return t
}

// maxApplyBacklog is MaxApplyBacklog, or its default.
func (c Config) maxApplyBacklog() uint64 {
	if c.MaxApplyBacklog == 0 {
		return DefaultMaxApplyBacklog
	}
	return c.MaxApplyBacklog
}

// maxUncommittedBytes is MaxUncommittedBytes, or its default.
func (c Config) maxUncommittedBytes() uint64 {
	if c.MaxUncommittedBytes == 0 {
		return DefaultMaxUncommittedBytes
	}
	return c.MaxUncommittedBytes
}

// catchUpEntries is how many applied entries are kept in memory behind a
// snapshot, so a slightly lagging follower gets entries instead of a whole
// snapshot: half the snapshot interval, at most etcd's 5000, and, when
// the last interval's entries averaged avgBytes, at most a quarter of
// SnapshotBytes.
func (c Config) catchUpEntries(avgBytes uint64) uint64 {
	keep := min(c.SnapshotCount/2, 5000)
	if c.SnapshotBytes > 0 && avgBytes > 0 {
		keep = min(keep, c.SnapshotBytes/4/avgBytes)
	}
	return keep
}
