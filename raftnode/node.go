// Package raftnode drives one etcd/raft node by hand: it owns the raft.Node,
// ticks it, and handles every Ready in the order raft requires (persist,
// send, apply, snapshot, advance). Proposals wait for their own entry to be
// applied on this node; reads wait for a ReadIndex barrier.
package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/pkg/v3/idutil"
	"go.etcd.io/etcd/pkg/v3/wait"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	stats "go.etcd.io/etcd/server/v3/etcdserver/api/v2stats"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Errors returned by Propose and ReadBarrier.
var (
	// ErrStopped: the node is shutting down or has stopped.
	ErrStopped = errors.New("raftnode: stopped")
	// ErrNoLeader: the proposal was refused locally (no leader known, a
	// leadership transfer, or too much uncommitted data) until the deadline.
	// It was never appended: the operation definitely did not happen.
	ErrNoLeader = errors.New("raftnode: no leader accepted the proposal")
	// ErrTimeout: the proposal was handed to raft but not applied here before
	// the deadline. It may still commit: the outcome is unknown.
	ErrTimeout = errors.New("raftnode: timed out waiting for commit; outcome unknown")
	// ErrReadTimeout: no read barrier could be confirmed before the deadline.
	ErrReadTimeout = errors.New("raftnode: timed out waiting for a read barrier")
	// ErrLeaderChanged: the leader changed after the proposal was handed to
	// raft, and the new leader's first entries were applied without it. It
	// was most likely lost with the old leader, but it could still commit:
	// the outcome is unknown. Reported at once instead of at the deadline,
	// so clients retry against the new leader.
	ErrLeaderChanged = errors.New("raftnode: leader changed before the proposal was applied; outcome unknown")
	// ErrTooManyRequests: the proposal was refused at once, before raft
	// saw it, because this node is too far behind applying what is
	// committed (Config.MaxApplyBacklog), or because this node leads and
	// raft dropped it for its limit on uncommitted entries. It was never
	// appended: the operation definitely did not happen; retry later.
	ErrTooManyRequests = errors.New("raftnode: too many requests: proposal refused; not applied")
)

// StateMachine is the replicated state. Its methods are called with the
// node's write lock held: from the raft goroutine, and Capture also from
// CaptureState's callers.
type StateMachine interface {
	// Apply executes a committed command; the result must be deterministic.
	Apply(index uint64, cmd []byte) any
	// Capture must be cheap: it runs in the Ready loop. The function it
	// returns writes the state as of the call, from another goroutine
	// while Apply goes on, so a deep queue does not stall the loop.
	Capture() func(io.Writer) error
	// RestoreFrom replaces the state with one Capture wrote, reading r to
	// its end; on error the state is unchanged.
	RestoreFrom(r io.Reader) error
}

// Storage is the durable log (implemented by wal.Store).
type Storage interface {
	Storage() *raft.MemoryStorage
	Existed() bool
	Snapshot() *raftpb.Snapshot
	Save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error
	// CreateSnapshot streams the state from write into a state file, then
	// saves a snapshot holding meta; it returns the state's size.
	CreateSnapshot(idx, compactTo uint64, cs *raftpb.ConfState, meta []byte, write func(io.Writer) error) (int64, error)
	// OpenSnapshot returns a snapshot's meta and a reader of its state
	// that fails at its end unless all of it matched; no reader when the
	// snapshot carries its state inline in meta.
	OpenSnapshot(snap *raftpb.Snapshot) (meta []byte, state io.ReadCloser, err error)
	// SnapshotState opens a snapshot's state file for sending to a peer;
	// ok is false when its state is inline.
	SnapshotState(snap *raftpb.Snapshot) (rc io.ReadCloser, size int64, ok bool, err error)
	// Snapshotter is where rafthttp saves state files peers send.
	Snapshotter() *snap.Snapshotter
	// ClusterID is the id of the cluster the log belongs to: rafthttp
	// refuses peers of any other.
	ClusterID() uint64
	// CheckReceivedSnapshot checks, before raft steps it, a snapshot a
	// peer sent, whose state file rafthttp has saved. An error refuses the
	// message: nothing is stored, and the sender sends it again. (A disk
	// that fails shows again in the next Save, which stops the node.)
	CheckReceivedSnapshot(snap *raftpb.Snapshot) error
}

// Applied is the outcome of a proposal: the log position of its entry and
// what the state machine returned for it.
type Applied struct {
	Index, Term uint64
	Result      any
}

// Status is a point-in-time view of the node.
type Status struct {
	Leader  uint64 // 0 when none is known
	Term    uint64 // the latest persisted term
	Commit  uint64 // the commit index last persisted (as heard from the leader)
	Applied uint64
	// SnapshotIndex is the index of the newest snapshot saved or restored.
	SnapshotIndex uint64
	Members       []Member
}

// Counters are what this node's raft machinery has done since it started:
// the mechanism behind its throughput, for benchmarks and metrics.
type Counters struct {
	// Readys handled; the entries they carried to save, and of those
	// Readys how many had to be fsynced (raft.MustSync); the entries
	// they had to apply; the raft messages they sent.
	Readys, SavedEntries, SyncedReadys, AppliedEntries, MessagesSent uint64
	// Groups counts the entries this node proposed for Propose's callers;
	// GroupedCommands the commands they carried.
	Groups, GroupedCommands uint64
	// MergedForwards counts the proposals (each a follower's group)
	// that this node, leading, merged into its own groups, and
	// MergedCommands their commands: both are counted again in Groups
	// and GroupedCommands, the follower's and this node's.
	MergedForwards, MergedCommands uint64
	// ReadRounds counts the ReadIndex rounds this node has had answered:
	// one serves every ReadBarrier that joined it.
	ReadRounds uint64
	// LeaderChanges counts the changes of leader this node saw.
	LeaderChanges uint64
	// ProposalsApplied and ProposalsFailed count Propose's calls that
	// returned an Applied or an error; ProposalsPending those waiting now.
	ProposalsApplied, ProposalsFailed, ProposalsPending uint64
	// Snapshots counts the snapshots this node saved; SnapshotSeconds the
	// time they took in all, in the background.
	Snapshots       uint64
	SnapshotSeconds float64
}

// counters are Counters as the raft goroutine updates them.
type counters struct {
	readys, savedEntries, syncedReadys, appliedEntries, messagesSent atomic.Uint64
	leaderChanges, applied, failed, snapshots, snapshotNanos         atomic.Uint64
	mergedForwards, mergedCommands                                   atomic.Uint64
	pending                                                          atomic.Int64
}

// Node is one raft member. Create it with New, then call Run.
type Node struct {
	cfg   Config
	lg    *zap.Logger
	store Storage
	sm    StateMachine

	// mu guards sm and members against readers; only the raft goroutine
	// writes them.
	mu      sync.RWMutex
	members *membership
	// publishedInLog: members whose API URL publish is in the log,
	// applied or not (see notePublishes).
	publishedInLog map[uint64]bool

	raft      raft.Node
	started   chan struct{} // closed once raft is set
	stopped   chan struct{} // closed when Run returns
	transport *rafthttp.Transport

	ids       *idutil.Generator
	proposals wait.Wait   // request id → Applied
	reads     *readRounds // ReadBarrier's shared ReadIndex rounds
	groups    *groups     // proposals gathered into entries
	counts    counters
	applyWait wait.WaitTime // fires when applied ≥ index

	lead    atomic.Uint64
	applied atomic.Uint64
	// committed is the commit index of the last HardState saved; with
	// applied it gives the backlog Propose bounds.
	committed atomic.Uint64
	// term is the latest persisted term; appliedTerm the term of the last
	// applied entry. leaderChanged is closed (and replaced) whenever the
	// known leader changes, waking proposals that wait.
	term          atomic.Uint64
	appliedTerm   atomic.Uint64
	leaderMu      sync.Mutex
	leaderChanged chan struct{}
	// Owned by the raft goroutine.
	confState     *raftpb.ConfState
	snapshotIndex uint64
	snapIndex     atomic.Uint64 // snapshotIndex, for Status
	removedSelf   bool          // this node applied its own removal
	snapshotting  bool          // a snapshot is being written in the background
	appliedBytes  uint64        // entry bytes applied since the last snapshot began
	snapDone      chan snapResult
	snapWG        sync.WaitGroup

	confMu sync.Mutex // one membership change at a time from this node
}

// New builds a node over an opened store and a state machine that holds
// the state of an empty log. It starts nothing.
func New(cfg Config, store Storage, sm StateMachine) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:            cfg,
		lg:             cfg.Logger,
		store:          store,
		sm:             sm,
		members:        newMembership(),
		publishedInLog: map[uint64]bool{},
		started:        make(chan struct{}),
		stopped:        make(chan struct{}),
		ids:            idutil.NewGenerator(uint16(cfg.ID), time.Now()),
		proposals:      wait.New(),
		reads:          newReadRounds(),
		groups:         newGroups(cfg.MaxGroupsInFlight),
		applyWait:      wait.NewTimeList(),
		confState:      &raftpb.ConfState{},
		snapDone:       make(chan snapResult, 1),
	}
	id := fmt.Sprint(cfg.ID)
	n.transport = &rafthttp.Transport{
		Logger: cfg.Logger.Named("rafthttp").WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return throttle(c, "cluster ID mismatch", 30*time.Second)
		})),
		ID:          types.ID(cfg.ID),
		ClusterID:   types.ID(store.ClusterID()),
		Raft:        (*transportRaft)(n),
		ServerStats: stats.NewServerStats(id, id),
		LeaderStats: stats.NewLeaderStats(cfg.Logger, id),
		ErrorC:      make(chan error, 1),
		TLSInfo:     cfg.peerTLSInfo(),
		Snapshotter: store.Snapshotter(),
	}
	if err := n.transport.Start(); err != nil {
		return nil, fmt.Errorf("raftnode: start transport: %w", err)
	}
	if hs, _, err := store.Storage().InitialState(); err == nil {
		n.term.Store(hs.GetTerm())
		n.committed.Store(hs.GetCommit())
	}
	if snap := store.Snapshot(); snap != nil {
		if err := n.restore(snap); err != nil {
			n.transport.Stop()
			return nil, err
		}
	}
	if n.members.removed[cfg.ID] {
		n.transport.Stop()
		return nil, ErrRemoved
	}
	n.notePublishes(unappliedTail(store.Storage(), n.applied.Load()))
	return n, nil
}

// unappliedTail returns the replayed entries after applied.
func unappliedTail(mem *raft.MemoryStorage, applied uint64) []*raftpb.Entry {
	last, err := mem.LastIndex()
	if err != nil || last <= applied {
		return nil
	}
	ents, err := mem.Entries(applied+1, last+1, math.MaxUint64)
	if err != nil {
		return nil
	}
	return ents
}

// PeerHandler serves the raft peer protocol and the members endpoint;
// mount it on the peer listener (or Attach the node to its PeerPort).
func (n *Node) PeerHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+membersPath, n.serveMembers)
	mux.Handle("/", n.checkCluster(n.transport.Handler()))
	return mux
}

// Run starts raft and handles its Ready loop until ctx is cancelled (nil) or
// a storage or transport failure (an error: the process must stop, as it
// can no longer make durable promises). It runs the read loop and the
// group flusher beside the Ready loop and waits for both; the caller runs
// PublishAPIURL.
func (n *Node) Run(ctx context.Context) error {
	defer close(n.stopped)
	defer n.snapWG.Wait() // the store must not close under a snapshot write
	defer n.transport.Stop()
	if err := n.learnPeers(ctx); err != nil {
		return err
	}
	n.raft = n.startRaft()
	defer n.raft.Stop() // last: the loops below end first
	close(n.started)
	n.addKnownPeers()
	stopLoops := n.startLoops()
	defer stopLoops()
	return n.loop(ctx)
}

// learnPeers, for a node joining with an empty data dir, learns the
// members from its peers: the leader's first messages need an answer
// before this node has applied any membership.
func (n *Node) learnPeers(ctx context.Context) error {
	if !n.cfg.Join || n.store.Existed() {
		return nil
	}
	ms, err := n.fetchMembers(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.ID != n.cfg.ID && len(m.PeerURLs) > 0 {
			n.transport.AddRemote(types.ID(m.ID), m.PeerURLs)
		}
	}
	return nil
}

// addKnownPeers adds the members known from the data dir, then the
// initial members --cluster lists in id order (those known keep their
// URLs).
func (n *Node) addKnownPeers() {
	n.mu.RLock()
	for _, m := range n.members.list() {
		n.addPeer(m)
	}
	n.mu.RUnlock()
	if !n.cfg.Join {
		for i, u := range n.cfg.Peers {
			if id := uint64(i + 1); id != n.cfg.ID {
				n.transport.AddPeer(types.ID(id), []string{u})
			}
		}
	}
}

// startLoops starts the read loop and the group flusher; the function it
// returns stops them and waits for them.
func (n *Node) startLoops() func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); n.readLoop(ctx) }()
	go func() { defer wg.Done(); n.flushGroups(ctx) }()
	return func() { cancel(); wg.Wait() }
}

// loop ticks raft and dispatches what arrives until the node must stop.
func (n *Node) loop(ctx context.Context) error {
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	done := ctx.Done()
	var handoff <-chan time.Time // set while handing leadership over on stop
	for {
		select {
		case <-ticker.C:
			n.raft.Tick()
		case rd := <-n.raft.Ready():
			if stop, err := n.onReady(rd, handoff != nil); stop || err != nil {
				return err
			}
		case r := <-n.snapDone:
			if err := n.snapshotSaved(r); err != nil {
				return err
			}
		case err := <-n.transport.ErrorC:
			return n.onTransportError(err)
		case <-done:
			done = nil
			if handoff = n.startHandoff(); handoff == nil {
				return nil
			}
		case <-handoff:
			n.lg.Warn("leadership transfer did not finish; stopping anyway")
			return nil
		}
	}
}

// onReady handles one Ready; stop when the node must stop now: it was
// removed, or, while handing over, another node leads.
func (n *Node) onReady(rd raft.Ready, handingOff bool) (stop bool, err error) {
	if err := n.handleReady(rd); err != nil {
		return true, err
	}
	if n.removedSelf {
		n.lg.Warn("this node was removed from the cluster; stopping")
		return true, ErrRemoved
	}
	if lead := n.lead.Load(); handingOff && lead != n.cfg.ID && lead != raft.None {
		n.lg.Info("leadership handed over; stopping")
		return true, nil
	}
	return false, nil
}

// onTransportError is fatal: rafthttp reports peers answering 410 Gone
// to this node (it was removed), or a failure of its own.
func (n *Node) onTransportError(err error) error {
	if strings.Contains(err.Error(), "permanently removed") {
		n.lg.Warn("peers report this node removed from the cluster; stopping", zap.Error(err))
		return ErrRemoved
	}
	return fmt.Errorf("raftnode: transport: %w", err)
}

// startHandoff, when this node leads, transfers leadership before it
// stops and returns when to give up waiting; nil when there is nothing
// to hand over. A leader that just vanished leaves followers forwarding
// proposals into the void until they time out.
func (n *Node) startHandoff() <-chan time.Time {
	target := n.handoffTarget()
	if target == 0 {
		return nil
	}
	n.lg.Info("transferring leadership before stopping", zap.Uint64("to", target))
	n.raft.TransferLeadership(context.Background(), n.cfg.ID, target)
	return time.After(2 * time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval)
}

// handoffTarget returns the most up-to-date voter to lead after this node
// stops, or 0 when this node is not the leader or has no peer to hand to.
func (n *Node) handoffTarget() uint64 {
	st := n.raft.Status()
	if st.RaftState != raft.StateLeader {
		return 0
	}
	var target, best uint64
	for id, pr := range st.Progress {
		if id != n.cfg.ID && !pr.IsLearner && pr.Match >= best && pr.RecentActive {
			target, best = id, pr.Match
		}
	}
	return target
}

func (n *Node) startRaft() raft.Node {
	c := &raft.Config{
		ID:                        n.cfg.ID,
		ElectionTick:              n.cfg.ElectionTicks,
		HeartbeatTick:             1,
		Storage:                   n.store.Storage(),
		Applied:                   n.applied.Load(),
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  64 << 20,
		MaxUncommittedEntriesSize: n.cfg.maxUncommittedBytes(),
		MaxInflightMsgs:           256,      // 4 and 1 were measured too: no difference (README, Performance)
		MaxInflightBytes:          32 << 20, // in flight to one follower: bytes bound it, not only 256 × 1 MiB messages
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{n.lg.Named("raft").WithOptions(zap.AddCallerSkip(1)).Sugar()},
	}
	if n.store.Existed() || n.cfg.Join {
		n.lg.Info("restarting raft", zap.Uint64("applied", c.Applied), zap.Bool("join", n.cfg.Join))
		return raft.RestartNode(c)
	}
	peers := make([]raft.Peer, len(n.cfg.Peers))
	for i, u := range n.cfg.Peers {
		peers[i] = raft.Peer{ID: uint64(i + 1), Context: contextFor(u)}
	}
	n.lg.Info("bootstrapping new cluster", zap.Strings("peers", n.cfg.Peers))
	return raft.StartNode(c, peers)
}

// Propose replicates cmd and returns the state machine's result once the
// entry is applied on this node. Errors: ErrNoLeader and
// ErrTooManyRequests (definitely not applied), ErrTimeout and
// ErrLeaderChanged (unknown outcome), ErrStopped.
//
// The command joins this node's next group (see group.go): it is
// proposed with the others gathered while earlier groups were on their
// way, in one entry, and its result is its own.
func (n *Node) Propose(ctx context.Context, cmd []byte) (a Applied, err error) {
	n.counts.pending.Add(1)
	defer func() {
		n.counts.pending.Add(-1)
		if err != nil {
			n.counts.failed.Add(1)
		} else {
			n.counts.applied.Add(1)
		}
	}()
	if err := n.checkBacklog(); err != nil {
		return Applied{}, err
	}
	if n.cfg.NoGroupCommit {
		return n.proposeAs(ctx, n.ids.Next(), cmd, true)
	}
	if err := n.waitStarted(ctx); err != nil {
		return Applied{}, err
	}
	id := n.ids.Next()
	ch := n.proposals.Register(id)
	deadline, _ := ctx.Deadline()
	if err := n.groups.add(id, cmd, deadline); err != nil {
		n.proposals.Trigger(id, nil)
		return Applied{}, err
	}
	return n.await(ctx, id, ch)
}

// ProposeControl is Propose for the few commands that keep the cluster
// operable under load (cmd/raftq's clock ticks and disk alarms, each from
// a loop with one proposal out at a time): backpressure does not refuse
// them, and on the leader a drop for its uncommitted-size limit is
// retried until ctx ends, as raft makes room (a follower's is forwarded,
// the leader may carry it in its next group, and if the leader drops it,
// it times out). They are small and few, so they cannot grow the backlog
// that refuses everything else. This node does not group them.
func (n *Node) ProposeControl(ctx context.Context, cmd []byte) (Applied, error) {
	return n.proposeAs(ctx, n.ids.Next(), cmd, false)
}

// checkBacklog refuses a proposal while this node is more than
// MaxApplyBacklog entries behind applying what is committed (RAFT-NOTES
// rule 24): queueing more would only hold more in memory and time out.
func (n *Node) checkBacklog() error {
	committed, applied := n.committed.Load(), n.applied.Load()
	if limit := n.cfg.maxApplyBacklog(); committed > applied && committed-applied > limit {
		return fmt.Errorf("%w: %d committed entries not yet applied, more than %d", ErrTooManyRequests, committed-applied, limit)
	}
	return nil
}

// proposeAs proposes cmd under request id (a state-machine id from n.ids,
// or an internal one) and waits for it to be applied here. With
// refuseFull, a drop for the uncommitted-size limit is refused at once.
func (n *Node) proposeAs(ctx context.Context, id uint64, cmd []byte, refuseFull bool) (Applied, error) {
	if err := n.waitStarted(ctx); err != nil {
		return Applied{}, err
	}
	data := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(cmd)), id)
	data = append(data, cmd...)
	ch := n.proposals.Register(id)
	if err := n.proposeUntilAccepted(ctx, refuseFull, func() error { return n.raft.Propose(ctx, data) }); err != nil {
		n.proposals.Trigger(id, nil)
		return Applied{}, err
	}
	return n.await(ctx, id, ch)
}

// await waits for the proposal registered as id to be applied here.
func (n *Node) await(ctx context.Context, id uint64, ch <-chan any) (Applied, error) {
	changed := n.leaderChange()
	var poll <-chan time.Time
	var lostBelowTerm uint64 // set once the leader changed
	for {
		select {
		case v := <-ch:
			return outcome(v)
		case <-changed:
			changed = n.leaderChange()
			if n.groups.isPending(id) {
				// Not yet handed to raft: it will go to the new leader,
				// so this change cannot have lost it.
				continue
			}
			// An entry the old leader had appended is committed before the
			// new leader's own first entry, or never.
			lostBelowTerm = n.term.Load()
			if poll == nil {
				t := time.NewTicker(n.cfg.TickInterval)
				defer t.Stop()
				poll = t.C
			}
		case <-poll:
			if n.lead.Load() == raft.None || n.appliedTerm.Load() < lostBelowTerm {
				continue
			}
			select {
			case v := <-ch:
				return outcome(v)
			default:
				n.proposals.Trigger(id, nil)
				return Applied{}, ErrLeaderChanged
			}
		case <-ctx.Done():
			if n.groups.drop(id) {
				n.proposals.Trigger(id, nil)
				return Applied{}, fmt.Errorf("%w: not yet proposed at the deadline: %w", ErrNoLeader, ctx.Err())
			}
			n.proposals.Trigger(id, nil)
			return Applied{}, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		case <-n.stopped:
			select {
			case v := <-ch: // applied just before the stop (a node removing itself)
				if a, ok := v.(Applied); ok {
					return a, nil
				}
			default:
			}
			return Applied{}, ErrStopped
		}
	}
}

// outcome is what a proposal's waiter was sent: its Applied, the error
// its group was refused with, or nil when the node stops.
func outcome(v any) (Applied, error) {
	switch v := v.(type) {
	case Applied:
		return v, nil
	case error:
		return Applied{}, v
	}
	return Applied{}, ErrStopped
}

// leaderChange returns a channel closed at the next change of leader.
func (n *Node) leaderChange() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	if n.leaderChanged == nil {
		n.leaderChanged = make(chan struct{})
	}
	return n.leaderChanged
}

// setLeader records the leader raft reports and wakes waiting proposals
// when it changed.
func (n *Node) setLeader(lead uint64) {
	if n.lead.Swap(lead) == lead {
		return
	}
	n.groups.lost()
	if lead != raft.None {
		n.counts.leaderChanges.Add(1) // as etcd's leader_changes_seen_total
	}
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	if n.leaderChanged != nil {
		close(n.leaderChanged)
		n.leaderChanged = nil
	}
}

// proposeUntilAccepted hands a proposal to raft, retrying while raft drops
// it (no leader yet, e.g. during an election, or a leadership transfer),
// until ctx ends. With refuseFull, a drop on the leader with no transfer
// under way, which is its limit on uncommitted entries
// (MaxUncommittedEntriesSize), is refused at once with ErrTooManyRequests;
// internal proposals and conf changes keep retrying. (A follower cannot
// tell: the leader drops what it forwards without a word, and the
// proposal times out, outcome unknown, as any lost proposal.)
func (n *Node) proposeUntilAccepted(ctx context.Context, refuseFull bool, propose func() error) error {
	const retry = 20 * time.Millisecond
	for {
		err := propose()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, raft.ErrStopped):
			return ErrStopped
		case refuseFull && errors.Is(err, raft.ErrProposalDropped) && n.droppedForSize():
			return fmt.Errorf("%w: the leader's uncommitted entries are at their limit", ErrTooManyRequests)
		case !errors.Is(err, raft.ErrProposalDropped):
			// ctx ended inside raft's Propose: raft may already have taken
			// the entry (it waits for the step's result after accepting
			// the message), so the outcome is unknown.
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		select {
		case <-time.After(retry):
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
		case <-n.stopped:
			return ErrStopped
		}
	}
}

// droppedForSize reports whether a proposal raft just dropped was dropped
// for the uncommitted-size limit: raft's leader drops a proposal only
// then, during a leadership transfer, or once it is removed from the
// configuration (it then steps down: StepDownOnRemoval). It asks raft's
// goroutine, so it is called on drops only.
func (n *Node) droppedForSize() bool {
	st := n.raft.Status()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != raft.None {
		return false
	}
	_, member := st.Progress[n.cfg.ID]
	return member
}

func (n *Node) waitStarted(ctx context.Context) error {
	select {
	case <-n.started:
		return nil
	case <-n.stopped:
		return ErrStopped
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
	}
}

// View calls fn with the state machine locked against changes. Call it
// after ReadBarrier for a linearizable read; fn must not keep references.
func (n *Node) View(fn func()) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	fn()
}

// Applied is the index of the last entry applied to the state machine. It
// takes no lock, so it may be called inside View, where it matches the
// state fn sees.
func (n *Node) Applied() uint64 { return n.applied.Load() }

// ID is this node's id.
func (n *Node) ID() uint64 { return n.cfg.ID }

// Status reports the leader, the applied index and the members.
func (n *Node) Status() Status {
	n.mu.RLock()
	members := n.members.list()
	n.mu.RUnlock()
	return Status{Leader: n.lead.Load(), Term: n.term.Load(), Commit: n.committed.Load(), Applied: n.applied.Load(),
		SnapshotIndex: n.snapIndex.Load(), Members: members}
}

// Counters reads the node's counters.
func (n *Node) Counters() Counters {
	gs := n.groups.snapshot()
	return Counters{Readys: n.counts.readys.Load(), SavedEntries: n.counts.savedEntries.Load(),
		SyncedReadys: n.counts.syncedReadys.Load(), AppliedEntries: n.counts.appliedEntries.Load(),
		MessagesSent: n.counts.messagesSent.Load(), Groups: gs.Groups, GroupedCommands: gs.Commands,
		MergedForwards: n.counts.mergedForwards.Load(), MergedCommands: n.counts.mergedCommands.Load(),
		ReadRounds: n.reads.answered.Load(), LeaderChanges: n.counts.leaderChanges.Load(),
		ProposalsApplied: n.counts.applied.Load(), ProposalsFailed: n.counts.failed.Load(),
		ProposalsPending: uint64(max(0, n.counts.pending.Load())), Snapshots: n.counts.snapshots.Load(),
		SnapshotSeconds: time.Duration(n.counts.snapshotNanos.Load()).Seconds()}
}
