// Package chaos is raftq's fault suite: it runs real raftq processes on
// loopback behind fault-injecting proxies, drives a recorded workload
// through crashes, pauses, partitions, slow links, crash points and disk
// damage, then heals, drains and checks the history (see Check).
//
// The daemon must be built with -tags failpoints for crash points to work;
// BuildBinary does that.
package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/raftq/raftq/internal/ports"
)

// ClusterConfig says how to run a test cluster.
type ClusterConfig struct {
	Binary         string // raftq built with -tags failpoints
	Nodes          int    // 3 or 5
	Dir            string // data dirs and logs go here
	Seed           uint64
	SnapshotCount  int           // default 100: snapshots happen during a run
	Tick           time.Duration // default 50ms
	ElectionTicks  int           // default 10
	RequestTimeout time.Duration // default 2s
	Logger         *zap.Logger
}

func (c *ClusterConfig) defaults() {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = 100
	}
	if c.Tick == 0 {
		c.Tick = 50 * time.Millisecond
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// ElectionTimeout is how long followers wait for a heartbeat.
func (c ClusterConfig) ElectionTimeout() time.Duration {
	return c.Tick * time.Duration(c.ElectionTicks)
}

// How long the harness waits. The suite runs on shared, loaded machines
// (2 cores, other packages' tests alongside), where a process can be
// starved for seconds: a slow answer is never a fault, so each deadline is
// far beyond what a healthy run needs and passes only for a node that is
// stuck, not for one that is slow.
const (
	startTimeout    = time.Minute      // a process, until its API accepts connections
	killTimeout     = 30 * time.Second // a SIGKILLed process, until it is gone
	stateTimeout    = 5 * time.Second  // one GET /debug/state
	leaderTimeout   = time.Minute      // until a leader is known to a majority
	convergeTimeout = 2 * time.Minute  // until every node applied the same index
	drainTimeout    = 3 * time.Minute  // the final drain of every queue
	readTimeout     = time.Minute      // a node's final GET /queues, retried
	exitTimeout     = time.Minute      // a removed member, until it exits by itself
	memberTimeout   = time.Minute      // a membership change, retried until known
)

// Cluster is a running set of raftq processes and the network between them.
type Cluster struct {
	cfg ClusterConfig
	Net *Net
	lg  *zap.Logger

	mu    sync.RWMutex
	nodes []*Node // by id - 1; removed members stay
	peers string  // --cluster: every peer URL known, in id order
}

// Node is one raftq process (which may be stopped, paused or dead).
type Node struct {
	ID      uint64
	API     string // http://127.0.0.1:port
	DataDir string
	LogPath string
	peer    string // the real peer listener, behind proxy
	proxy   *Proxy
	join    bool // added at runtime: started with --join
	removed bool // removed from the membership (guarded by Cluster.mu)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// ErrExited: a node's process ended while it was expected to serve.
var ErrExited = errors.New("chaos: node exited")

// BuildBinary builds raftq with failpoints compiled in, into dir.
func BuildBinary(ctx context.Context, moduleRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "raftq-faults")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "failpoints", "-o", bin, "./cmd/raftq")
	cmd.Dir = moduleRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("chaos: build raftq: %w\n%s", err, out)
	}
	return bin, nil
}

// freeAddr is a port for a node: the fault suite's range is 10000-19999,
// the e2e tests' 20000-31999.
func freeAddr() (string, error) { return ports.Free(10000, 10000) }

// newNode picks node id's ports, data dir and log, and starts its proxy.
func (c *Cluster) newNode(id uint64) (*Node, error) {
	api, err := freeAddr()
	if err != nil {
		return nil, err
	}
	peer, err := freeAddr()
	if err != nil {
		return nil, err
	}
	n := &Node{ID: id, API: "http://" + api, peer: peer,
		DataDir: filepath.Join(c.cfg.Dir, fmt.Sprintf("node-%d", id)),
		LogPath: filepath.Join(c.cfg.Dir, fmt.Sprintf("node-%d.log", id))}
	if n.proxy, err = c.Net.Listen(id, peer); err != nil {
		return nil, err
	}
	return n, nil
}

// StartCluster starts every node and waits for a leader.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	cfg.defaults()
	c := &Cluster{cfg: cfg, Net: NewNet(cfg.Seed), lg: cfg.Logger}
	var urls []string
	for i := 1; i <= cfg.Nodes; i++ {
		n, err := c.newNode(uint64(i))
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
		urls = append(urls, "http://"+n.proxy.Addr())
	}
	c.peers = strings.Join(urls, ",")
	for _, n := range c.nodes {
		if err := c.Start(ctx, n.ID); err != nil {
			c.Close()
			return nil, err
		}
	}
	if _, err := c.WaitLeader(ctx, leaderTimeout); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Config is the configuration the cluster runs with.
func (c *Cluster) Config() ClusterConfig { return c.cfg }

// Nodes lists every node ever started, removed ones too, in id order.
func (c *Cluster) Nodes() []*Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]*Node(nil), c.nodes...)
}

// Members lists the nodes that are members (not removed), in id order.
func (c *Cluster) Members() []*Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*Node
	for _, n := range c.nodes {
		if !n.removed {
			out = append(out, n)
		}
	}
	return out
}

// Node returns node id.
func (c *Cluster) Node(id uint64) *Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.nodes[id-1]
}

// NewNode prepares the next id for a runtime addition (its proxy, ports
// and data dir) without starting it; Start starts it with --join.
func (c *Cluster) NewNode() (*Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.newNode(uint64(len(c.nodes) + 1))
	if err != nil {
		return nil, err
	}
	n.join = true
	c.nodes = append(c.nodes, n)
	c.peers += ",http://" + n.proxy.Addr()
	return n, nil
}

// PeerURL is where peers reach node id (its proxy).
func (n *Node) PeerURL() string { return "http://" + n.proxy.Addr() }

// MarkRemoved records that node id left the membership: healing no longer
// restarts it and convergence no longer waits for it.
func (c *Cluster) MarkRemoved(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[id-1].removed = true
}

// Start starts node id on its data dir, with extra environment (such as
// RAFTQ_FAILPOINTS), and waits until its API port accepts connections.
func (c *Cluster) Start(ctx context.Context, id uint64, env ...string) error {
	n := c.Node(id)
	c.mu.RLock()
	peers := c.peers
	c.mu.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.alive() {
		return fmt.Errorf("chaos: node %d is already running", id)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	args := []string{"--id", strconv.FormatUint(id, 10), "--cluster", peers,
		"--listen-peer", n.peer, "--peer-local-addr", NodeAddr(id),
		"--api-addr", strings.TrimPrefix(n.API, "http://"), "--data-dir", n.DataDir,
		"--snapshot-count", strconv.Itoa(c.cfg.SnapshotCount),
		"--tick", c.cfg.Tick.String(), "--election-ticks", strconv.Itoa(c.cfg.ElectionTicks),
		"--request-timeout", c.cfg.RequestTimeout.String()}
	if n.join {
		args = append(args, "--join")
	}
	cmd := exec.Command(c.cfg.Binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("chaos: start node %d: %w", id, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	n.cmd, n.exited, n.paused = cmd, exited, false
	c.lg.Info("node started", zap.Uint64("id", id), zap.Strings("env", env))
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("%w: node %d during start: %v", ErrExited, id, cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(n.API, "http://"), time.Second); err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("chaos: node %d did not start serving in %v", id, startTimeout)
}

// alive reports whether the process runs; n.mu must be held. (Wait
// writes cmd.ProcessState in another goroutine; exited is synchronised.)
func (n *Node) alive() bool {
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Running reports whether node id's process is alive (paused counts).
func (c *Cluster) Running(id uint64) bool {
	n := c.Node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.alive()
}

// Kill sends SIGKILL to node id and waits until it is gone.
func (c *Cluster) Kill(id uint64) error {
	n := c.Node(id)
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.paused = false
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
		c.lg.Info("node killed", zap.Uint64("id", id))
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("chaos: node %d survived SIGKILL for %v", id, killTimeout)
	}
}

// WaitExit waits until node id's process ends by itself and returns its
// exit code.
func (c *Cluster) WaitExit(id uint64, timeout time.Duration) (int, error) {
	n := c.Node(id)
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return 0, fmt.Errorf("chaos: node %d was never started", id)
	}
	select {
	case <-exited:
		return cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("chaos: node %d still running after %v", id, timeout)
	}
}

// Exited is closed when node id's current process ends (nil if it was
// never started).
func (c *Cluster) Exited(id uint64) <-chan struct{} {
	n := c.Node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exited
}

// Pause stops node id with SIGSTOP; Resume continues it.
func (c *Cluster) Pause(id uint64) error  { return c.stopCont(id, syscall.SIGSTOP, true) }
func (c *Cluster) Resume(id uint64) error { return c.stopCont(id, syscall.SIGCONT, false) }

func (c *Cluster) stopCont(id uint64, sig syscall.Signal, paused bool) error {
	n := c.Node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.alive() {
		return nil
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("chaos: %v node %d: %w", sig, id, err)
	}
	n.paused = paused
	c.lg.Info("node signalled", zap.Uint64("id", id), zap.Stringer("signal", sig))
	return nil
}

// HealAll heals the network, resumes paused nodes and restarts dead ones.
// The nemesis undoes each fault before it returns, even one the end of the
// run cut short (see nemesis.inject), so healing never meets a fault
// halfway; HealAll only makes sure.
func (c *Cluster) HealAll(ctx context.Context) error {
	c.Net.Heal()
	for _, n := range c.Members() {
		n.mu.Lock()
		paused := n.paused
		n.mu.Unlock()
		if paused {
			if err := c.Resume(n.ID); err != nil {
				return err
			}
		}
		if !c.Running(n.ID) {
			if err := c.Start(ctx, n.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close kills every node and closes the proxies.
func (c *Cluster) Close() {
	for _, n := range c.Nodes() {
		if c.Running(n.ID) {
			c.Kill(n.ID)
		}
		if n.proxy != nil {
			n.proxy.Close()
		}
	}
}

// LocalState is a node's GET /debug/state.
type LocalState struct {
	ID      uint64 `json:"id"`
	Leader  uint64 `json:"leader"`
	Applied uint64 `json:"applied"`
	Hash    string `json:"hash"`
}

// stateClient has no timeout of its own: each poll gets stateTimeout,
// within the caller's context.
var stateClient = &http.Client{}

// State reads node id's local state. A node that does not answer within
// stateTimeout yields an error: that says nothing about its state.
func (c *Cluster) State(ctx context.Context, id uint64) (LocalState, error) {
	var st LocalState
	return st, c.debugJSON(ctx, id, "/debug/state", &st)
}

// Counters reads a node's GET /debug/counters (counts since its process
// started).
func (c *Cluster) Counters(ctx context.Context, id uint64) (map[string]uint64, error) {
	var out map[string]uint64
	return out, c.debugJSON(ctx, id, "/debug/counters", &out)
}

// debugJSON reads one of node id's /debug routes into v, within
// stateTimeout.
func (c *Cluster) debugJSON(ctx context.Context, id uint64, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Node(id).API+path, nil)
	if err != nil {
		return err
	}
	resp, err := stateClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chaos: node %d %s: %s", id, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// states reads the local state of nodes at once, so that one slow node
// neither delays the others nor lets their indexes move apart meanwhile.
func (c *Cluster) states(ctx context.Context, nodes []*Node) ([]LocalState, []error) {
	sts, errs := make([]LocalState, len(nodes)), make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { sts[i], errs[i] = c.State(ctx, n.ID) })
	}
	wg.Wait()
	return sts, errs
}

// Leader returns the node that considers itself leader and whose claim the
// most reachable nodes share, or 0.
func (c *Cluster) Leader(ctx context.Context) uint64 {
	votes := map[uint64]int{}
	self := map[uint64]bool{}
	sts, errs := c.states(ctx, c.Members())
	for i, st := range sts {
		if errs[i] != nil {
			continue
		}
		if st.Leader != 0 {
			votes[st.Leader]++
		}
		if st.Leader == st.ID {
			self[st.ID] = true
		}
	}
	var best uint64
	for id := range self {
		if best == 0 || votes[id] > votes[best] {
			best = id
		}
	}
	return best
}

// WaitLeader polls until a leader is known to a majority.
func (c *Cluster) WaitLeader(ctx context.Context, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if id := c.Leader(ctx); id != 0 {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("chaos: no leader within %v", timeout)
}

// ErrDiverged: two nodes applied the same index but hold different state.
var ErrDiverged = errors.New("chaos: state machines diverged")

// WaitConverged polls until every node answers with the same applied index
// and then requires identical state hashes.
func (c *Cluster) WaitConverged(ctx context.Context, timeout time.Duration) ([]LocalState, error) {
	deadline := time.Now().Add(timeout)
	var last []LocalState
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var errs []error
		last, errs = c.states(ctx, c.Members())
		lastErr = errors.Join(errs...)
		if lastErr == nil && sameApplied(last) {
			for _, st := range last[1:] {
				if st.Hash != last[0].Hash {
					return last, fmt.Errorf("%w at index %d: %+v", ErrDiverged, st.Applied, last)
				}
			}
			return last, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last, fmt.Errorf("chaos: nodes did not converge within %v: %+v (last error: %v)", timeout, last, lastErr)
}

func sameApplied(sts []LocalState) bool {
	for _, st := range sts[1:] {
		if st.Applied != sts[0].Applied {
			return false
		}
	}
	return len(sts) > 0
}
