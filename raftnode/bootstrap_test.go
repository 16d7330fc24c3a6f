package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/raftnode"
	"github.com/raftq/raftq/wal"
)

func TestClusterIDFor(t *testing.T) {
	urls := []string{"http://a:1", "http://b:2", "http://c:3"}
	id := raftnode.ClusterIDFor("raftq-cluster", urls)
	if id == 0 || id != raftnode.ClusterIDFor("raftq-cluster", append([]string(nil), urls...)) {
		t.Fatalf("id %x not stable", id)
	}
	for name, other := range map[string]uint64{
		"token":    raftnode.ClusterIDFor("other", urls),
		"order":    raftnode.ClusterIDFor("raftq-cluster", []string{urls[1], urls[0], urls[2]}),
		"url":      raftnode.ClusterIDFor("raftq-cluster", []string{urls[0], urls[1], "http://c:4"}),
		"boundary": raftnode.ClusterIDFor("raftq-clusterhttp://a:1", urls[1:]),
		"legacy":   raftnode.LegacyClusterID,
	} {
		if other == id {
			t.Errorf("%s: same id %x", name, id)
		}
	}
	if raftnode.LegacyClusterID != wal.LegacyClusterID {
		t.Fatalf("raftnode.LegacyClusterID %x, wal.LegacyClusterID %x", raftnode.LegacyClusterID, wal.LegacyClusterID)
	}
}

// fresh is a node with an empty data dir: its peer port served, nothing
// else.
type fresh struct {
	port *raftnode.PeerPort
	cfg  raftnode.Config
}

// freshNodes starts the peer ports of nodes with empty data dirs, one per
// token (their ids are 1, 2, …); down lists ids whose port is not served.
func freshNodes(t *testing.T, tokens []string, down ...int) []*fresh {
	t.Helper()
	var ls []net.Listener
	var urls []string
	for range tokens {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls, urls = append(ls, l), append(urls, "http://"+l.Addr().String())
	}
	var out []*fresh
	for i, l := range ls {
		cfg := portConfig(uint64(i+1), urls)
		cfg.ClusterToken = tokens[i]
		f := &fresh{cfg: cfg}
		var err error
		if f.port, err = raftnode.NewPeerPort(cfg); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
		if slices.Contains(down, i+1) {
			l.Close() // connections refused
			continue
		}
		srv := &http.Server{Handler: f.port, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}
	return out
}

func portConfig(id uint64, urls []string) raftnode.Config {
	return raftnode.Config{ID: id, Peers: urls, ClusterToken: "test", SnapshotCount: 1000,
		TickInterval: 10 * time.Millisecond, ElectionTicks: 10, Logger: testLogger.Named(fmt.Sprint("b", id))}
}

type discovered struct {
	id  uint64
	err error
}

func discover(ctx context.Context, p *raftnode.PeerPort) <-chan discovered {
	ch := make(chan discovered, 1)
	go func() {
		id, err := p.Discover(ctx)
		ch <- discovered{id, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan discovered) discovered {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("Discover did not return")
		return discovered{}
	}
}

// The nodes of a new cluster, started one after the other, each wait for
// the others and all bootstrap the same cluster id.
func TestNewClusterBootstrapsTogether(t *testing.T) {
	nodes := freshNodes(t, []string{"test", "test", "test"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var chs []<-chan discovered
	for _, n := range nodes {
		chs = append(chs, discover(ctx, n.port))
		time.Sleep(300 * time.Millisecond) // staggered starts, as in the harnesses
	}
	want := raftnode.ClusterIDFor("test", nodes[0].cfg.Peers)
	for i, ch := range chs {
		if d := wait(t, ch); d.err != nil || d.id != want {
			t.Fatalf("node %d: %x %v, want %x", i+1, d.id, d.err, want)
		}
	}
}

// A node of three that hears from one peer only waits: that peer and
// itself are a quorum, but if this node's disk was replaced its own word
// is worth nothing, and the one peer may lack a write the two others
// committed.
func TestBootstrapWaitsForPeersBeyondItself(t *testing.T) {
	nodes := freshNodes(t, []string{"test", "test", "test"}, 3)
	nodes[1].port.Discover(canceled()) // node 2 answers "not bootstrapped"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d := wait(t, discover(ctx, nodes[0].port))
	if !errors.Is(d.err, context.DeadlineExceeded) {
		t.Fatalf("with node 3 down node 1 decided: %x %v", d.id, d.err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestSingleNodeBootstrapsAtOnce(t *testing.T) {
	nodes := freshNodes(t, []string{"test"})
	if d := wait(t, discover(canceled(), nodes[0].port)); d.err != nil || d.id != raftnode.ClusterIDFor("test", nodes[0].cfg.Peers) {
		t.Fatalf("%x %v", d.id, d.err)
	}
}

func TestBootstrapRefusesAnotherToken(t *testing.T) {
	nodes := freshNodes(t, []string{"test", "other"})
	nodes[1].port.Discover(canceled())
	d := wait(t, discover(context.Background(), nodes[0].port))
	if !errors.Is(d.err, raftnode.ErrOtherCluster) || !strings.Contains(d.err.Error(), "--cluster-token") {
		t.Fatalf("got %x %v, want ErrOtherCluster naming --cluster-token", d.id, d.err)
	}
}

// The peers of a running cluster know which members have run: one of them
// starting again on an empty data dir, bootstrapping or joining, is
// refused; a new member joining learns the cluster id.
func TestRunningClusterRefusesAWipedMember(t *testing.T) {
	c := newClusterWith(t, 3, func(c *cluster) { c.snapshot, c.publish = 1000, true })
	c.leader()
	deadline := time.Now().Add(20 * time.Second)
	for !allPublished(c.members[0].node) {
		if time.Now().After(deadline) {
			t.Fatalf("API URLs not published: %+v", c.members[0].node.Status().Members)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.stop(1) // node 2 is down: it is now the one that lost its disk
	for _, join := range []bool{false, true} {
		cfg := portConfig(2, c.urls)
		cfg.Join = join
		p, err := raftnode.NewPeerPort(cfg)
		if err != nil {
			t.Fatal(err)
		}
		d := wait(t, discover(context.Background(), p))
		if !errors.Is(d.err, raftnode.ErrAlreadyBootstrapped) || !strings.Contains(d.err.Error(), "--join") {
			t.Fatalf("join=%v: got %x %v, want ErrAlreadyBootstrapped telling what to do", join, d.id, d.err)
		}
	}
	cfg := portConfig(4, c.urls)
	cfg.Join = true
	p, err := raftnode.NewPeerPort(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := wait(t, discover(context.Background(), p)); d.err != nil || d.id != raftnode.ClusterIDFor("test", c.urls) {
		t.Fatalf("joining node 4: %x %v", d.id, d.err)
	}
}

func allPublished(n *raftnode.Node) bool {
	ms := n.Status().Members
	for _, m := range ms {
		if m.APIURL == "" {
			return false
		}
	}
	return len(ms) == 3
}

// A member that never ran (a cluster formed without it) bootstraps when it
// starts: its peers' cluster lists it, but not as started.
func TestLateInitialMemberBootstraps(t *testing.T) {
	c := newClusterWith(t, 3, func(c *cluster) { c.snapshot, c.publish, c.late = 1000, true, []int{2} })
	c.leader()
	enqueue(t, c.members[0].node, "q", "before 3")
	p, err := raftnode.NewPeerPort(portConfig(3, c.urls))
	if err != nil {
		t.Fatal(err)
	}
	if d := wait(t, discover(context.Background(), p)); d.err != nil || d.id != raftnode.ClusterIDFor("test", c.urls) {
		t.Fatalf("node 3: %x %v", d.id, d.err)
	}
}

// Nodes of before cluster ids answer a bare member list: a node joining
// their cluster takes the legacy cluster id.
func TestJoinLegacyCluster(t *testing.T) {
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/raftq/members" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `[{"id":1,"peer_urls":["http://127.0.0.1:1"],"api_url":"http://127.0.0.1:2"}]`)
	}))
	defer old.Close()
	cfg := portConfig(2, []string{old.URL})
	cfg.Join = true
	p, err := raftnode.NewPeerPort(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := wait(t, discover(context.Background(), p)); d.err != nil || d.id != raftnode.LegacyClusterID {
		t.Fatalf("%x %v, want the legacy id", d.id, d.err)
	}
}
