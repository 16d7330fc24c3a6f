package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Group commit. A proposal does not become a raft entry of its own: it
// joins this node's pending group, and a flusher hands each group to raft
// as one entry carrying all its commands (as CockroachDB's proposal
// buffer, NATS and Ra gather proposals). A group goes out as soon as
// fewer than MaxGroupsInFlight of this node's groups are on their way
// (handed to raft and not yet applied here), so a lone proposal on an idle
// node goes at once, and proposals that arrive while groups are on their
// way (being fsynced, replicated, committed) are gathered into the next.
//
// The contract, for each command in a group:
//   - applied: its waiter gets its own Applied: the entry's index and term,
//     and the state machine's result for that command alone, which saw
//     seq index<<queuefsm.SeqPosBits | its position in the entry;
//   - its caller gives up before its group is handed to raft: the command
//     is taken out, never proposed, and the caller gets ErrNoLeader (it
//     definitely did not happen);
//   - its group is refused by raft (no leader until the group's deadline,
//     the leader's uncommitted-size limit) or the node stops first: every
//     waiter of the group gets that error, definite as for a lone
//     proposal (ErrNoLeader, ErrTooManyRequests, ErrStopped);
//   - its group was handed to raft and then lost (a leader change, a
//     forwarded proposal dropped by the leader): every waiter of the group
//     learns it as a lone proposal would (ErrLeaderChanged, or ErrTimeout
//     at its deadline): outcome unknown.
//
// Commands keep their order: groups are proposed in the order they were
// gathered, and a group's commands in arrival order.
//
// A follower's groups reach the leader as proposals (MsgProp, which raft
// forwards fire-and-forget). The leader does not make each an entry of
// its own: their commands join its own pending group (mergeForwarded),
// so the cluster makes one stream of groups, not one per node, and the
// leader's MaxGroupsInFlight paces them all. For the follower's callers
// nothing changes: their commands were handed to raft, and each learns
// its own result when the entry holding it is applied on their node
// (landedIn counts the follower's group off there), or the outcome is
// unknown if the leader changes first, as for any forwarded proposal. A
// merged command the leader has not yet handed to raft when it stops
// leading (a new term) is left out, never proposed (keepForwards): the
// follower's "leader changed" answer rests on the old leader's log
// holding all it will ever commit of them.

// Group limits.
const (
	// DefaultMaxGroupsInFlight is how many of a node's groups may be on
	// their way at once.
	DefaultMaxGroupsInFlight = 2
	// maxGroupCommands and maxGroupBytes cap one group; a command larger
	// than maxGroupBytes goes in a group of its own.
	maxGroupCommands = 1024
	maxGroupBytes    = 1 << 20
	// maxPendingBytes bounds what waits for a group on one node; past it a
	// proposal is refused at once with ErrTooManyRequests.
	maxPendingBytes = 32 << 20
	// inFlightFor is how long a group counts as on its way at most: one
	// lost without a leader change (dropped by the leader) must not hold
	// the next groups back for long. Counting it off early only lets one
	// more group go; nothing depends on it for correctness.
	inFlightFor = time.Second
	// groupTimeout is how long the flusher keeps handing a group to raft
	// when none of its callers has a deadline.
	groupTimeout = 5 * time.Second
)

// groupMarker, as the request id of an entry, says the entry is a group:
// no request id is 0 (idutil's carry the member id in their top bits, and
// internalID never returns 0).
const groupMarker = 0

// pendingCmd is one command waiting for its group.
type pendingCmd struct {
	id       uint64
	cmd      []byte
	deadline time.Time // its caller's; zero: none
	taken    bool      // in a group handed to the flusher
	dropped  bool      // its caller gave up before it was taken
	// forwardedIn is the term in which this node, leading, merged the
	// command from a follower's proposal; 0 for this node's own.
	forwardedIn uint64
}

// groups gathers proposals into groups. Its mutex guards everything; the
// flusher (Node.flushGroups) is the only one to take groups out.
type groups struct {
	mu       sync.Mutex
	pending  []*pendingCmd
	bytes    int
	byID     map[uint64]*pendingCmd // pending, not taken
	inFlight map[uint64]time.Time   // a group's first id → when it was handed to raft
	max      int
	kick     chan struct{} // cap 1: wakes the flusher
	stats    groupStats
}

// groupStats counts what grouping did, for Status.
type groupStats struct {
	Groups, Commands uint64
}

func newGroups(max int) *groups {
	if max <= 0 {
		max = DefaultMaxGroupsInFlight
	}
	return &groups{byID: map[uint64]*pendingCmd{}, inFlight: map[uint64]time.Time{}, max: max, kick: make(chan struct{}, 1)}
}

// add queues a command for the next group.
func (g *groups) add(id uint64, cmd []byte, deadline time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bytes+len(cmd) > maxPendingBytes && len(g.pending) > 0 {
		return fmt.Errorf("%w: %d bytes of proposals wait to be proposed on this node", ErrTooManyRequests, g.bytes)
	}
	p := &pendingCmd{id: id, cmd: cmd, deadline: deadline}
	g.pending = append(g.pending, p)
	g.byID[id] = p
	g.bytes += len(cmd)
	g.wake()
	return nil
}

func (g *groups) wake() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// drop takes a command its caller gave up on out of the pending group;
// false when it was already taken (handed to raft, or about to be).
func (g *groups) drop(id uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.byID[id]
	if p == nil {
		return false
	}
	p.dropped = true
	delete(g.byID, id)
	g.bytes -= len(p.cmd)
	return true
}

// isPending reports whether a command still waits for its group.
func (g *groups) isPending(id uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.byID[id]
	return ok
}

// take returns the next group, nil when nothing is pending or enough
// groups are on their way, marking it on its way.
func (g *groups) take(now time.Time) []*pendingCmd {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, at := range g.inFlight {
		if now.Sub(at) > inFlightFor {
			delete(g.inFlight, id)
		}
	}
	if len(g.inFlight) >= g.max {
		return nil
	}
	var out []*pendingCmd
	size, i := 0, 0
	for ; i < len(g.pending) && len(out) < maxGroupCommands; i++ {
		p := g.pending[i]
		if p.dropped {
			continue
		}
		if len(out) > 0 && size+len(p.cmd) > maxGroupBytes {
			break
		}
		p.taken = true
		delete(g.byID, p.id)
		g.bytes -= len(p.cmd)
		size += len(p.cmd)
		out = append(out, p)
	}
	g.pending = g.pending[i:]
	if len(g.pending) == 0 {
		g.pending = nil // let the backing array go
	}
	if len(out) > 0 {
		g.inFlight[out[0].id] = now
		g.stats.Groups++
		g.stats.Commands += uint64(len(out))
	}
	return out
}

// forward adds commands a follower forwarded to the pending group, all
// or none: false when they would pass maxPendingBytes (the caller then
// lets raft take them as they came).
func (g *groups) forward(cmds []groupCmd, term uint64) bool {
	size := 0
	for _, c := range cmds {
		size += len(c.cmd)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bytes+size > maxPendingBytes && len(g.pending) > 0 {
		return false
	}
	for _, c := range cmds {
		p := &pendingCmd{id: c.id, cmd: c.cmd, forwardedIn: term}
		g.pending = append(g.pending, p)
		g.byID[c.id] = p
	}
	g.bytes += size
	g.wake()
	return true
}

// landedIn counts off each of this node's groups whose first command is
// among cmds, an applied entry's: a group of this node's lands there as
// it was, or merged into the leader's group.
func (g *groups) landedIn(cmds []groupCmd) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.inFlight) == 0 {
		return
	}
	landed := false
	for _, c := range cmds {
		if _, ok := g.inFlight[c.id]; ok {
			delete(g.inFlight, c.id)
			landed = true
		}
	}
	if landed && len(g.pending) > 0 {
		g.wake()
	}
}

// landed counts a group off when its entry, named by its first request
// id, is applied here; it wakes the flusher if a group waits.
func (g *groups) landed(first uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.inFlight[first]; ok {
		delete(g.inFlight, first)
		if len(g.pending) > 0 {
			g.wake()
		}
	}
}

// lost counts off every group on its way: the leader changed, so each is
// applied soon or never, and holding the next ones back helps no one.
func (g *groups) lost() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.inFlight) > 0 {
		clear(g.inFlight)
		if len(g.pending) > 0 {
			g.wake()
		}
	}
}

// rekey moves a group on its way to a new first command id (its first
// was left out).
func (g *groups) rekey(from, to uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if at, ok := g.inFlight[from]; ok {
		delete(g.inFlight, from)
		g.inFlight[to] = at
	}
}

// settle forgets a group whose proposal failed.
func (g *groups) settle(first uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.inFlight, first)
}

func (g *groups) snapshot() groupStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

// flushGroups proposes groups until ctx ends: woken when a command is
// added or a group lands, it takes every group it may. At the end the
// commands still pending are left to their callers, who see the node
// stop.
func (n *Node) flushGroups(ctx context.Context) {
	// A group lost without a leader change is counted off by take, at
	// the next wake-up at the latest.
	t := time.NewTicker(inFlightFor)
	defer t.Stop()
	for {
		select {
		case <-n.groups.kick:
		case <-t.C:
		case <-ctx.Done():
			return
		}
		for {
			g := n.groups.take(time.Now())
			if g == nil {
				break
			}
			n.proposeGroup(ctx, g)
		}
	}
}

// proposeGroup hands one group to raft, retrying while raft drops it for
// want of a leader until the latest of its callers' deadlines; if raft
// refuses it, every caller is told why.
func (n *Node) proposeGroup(ctx context.Context, g []*pendingCmd) {
	deadline := time.Now().Add(groupTimeout)
	if d := latestDeadline(g); !d.IsZero() {
		deadline = d
	}
	gctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	data := encodeGroup(g)
	err := n.proposeUntilAccepted(gctx, true, func() error {
		if kept := n.keepForwards(g); len(kept) < len(g) {
			if len(kept) == 0 {
				return errForwardsLeft
			}
			n.groups.rekey(g[0].id, kept[0].id)
			g, data = kept, encodeGroup(kept)
		}
		return n.raft.Propose(gctx, data)
	})
	if err == nil {
		return
	}
	n.groups.settle(g[0].id)
	if errors.Is(err, errForwardsLeft) {
		return // nobody here waits for them
	}
	if ctx.Err() != nil {
		err = ErrStopped
	}
	for _, p := range g {
		n.proposals.Trigger(p.id, err)
	}
}

// errForwardsLeft: a group held only commands merged from followers, and
// keepForwards left them all out.
var errForwardsLeft = errors.New("raftnode: forwarded commands left out after a change of leader")

// keepForwards is g without the commands merged from followers in a term
// this node no longer leads. A follower whose leader changed answers its
// caller "leader changed, outcome unknown" once the new leader's first
// entries are applied (see Node.await): an entry the old leader appended
// commits before them or never. A merged command not yet appended by then
// must never be: it is left out here, so that the answer stays true to
// the rule. (Raft itself, stepping down, would forward it to the new
// leader, to land after the follower gave up.)
func (n *Node) keepForwards(g []*pendingCmd) []*pendingCmd {
	leading := n.lead.Load() == n.cfg.ID
	term := n.term.Load()
	for i, p := range g {
		if p.forwardedIn != 0 && (!leading || p.forwardedIn != term) {
			kept := append(make([]*pendingCmd, 0, len(g)-1), g[:i]...)
			for _, q := range g[i+1:] {
				if q.forwardedIn == 0 || leading && q.forwardedIn == term {
					kept = append(kept, q)
				}
			}
			return kept
		}
	}
	return g
}

func latestDeadline(g []*pendingCmd) time.Time {
	var latest time.Time
	for _, p := range g {
		if p.deadline.IsZero() {
			return time.Time{}
		}
		if p.deadline.After(latest) {
			latest = p.deadline
		}
	}
	return latest
}

// encodeGroup is a group's entry data. One command is an entry as before
// groups: its request id, then the command. More are the marker, their
// count, then for each its request id, its length and itself.
func encodeGroup(g []*pendingCmd) []byte {
	if len(g) == 1 {
		data := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(g[0].cmd)), g[0].id)
		return append(data, g[0].cmd...)
	}
	size := 8 + binary.MaxVarintLen64
	for _, p := range g {
		size += 8 + binary.MaxVarintLen64 + len(p.cmd)
	}
	data := binary.BigEndian.AppendUint64(make([]byte, 0, size), groupMarker)
	data = binary.AppendUvarint(data, uint64(len(g)))
	for _, p := range g {
		data = binary.BigEndian.AppendUint64(data, p.id)
		data = binary.AppendUvarint(data, uint64(len(p.cmd)))
		data = append(data, p.cmd...)
	}
	return data
}

// errBadGroup: a group entry that does not decode; the log is damaged.
var errBadGroup = errors.New("raftnode: malformed group entry")

// groupCmd is one command of a group entry.
type groupCmd struct {
	id  uint64
	cmd []byte
}

// decodeGroup decodes a group entry's data after the marker; the commands
// share data's bytes.
func decodeGroup(data []byte) ([]groupCmd, error) {
	count, k := binary.Uvarint(data)
	if k <= 0 || count < 2 || count > maxGroupCommands {
		return nil, errBadGroup
	}
	data = data[k:]
	out := make([]groupCmd, 0, count)
	for range count {
		if len(data) < 8 {
			return nil, errBadGroup
		}
		id := binary.BigEndian.Uint64(data)
		size, k := binary.Uvarint(data[8:])
		if k <= 0 || size > uint64(len(data)-8-k) {
			return nil, errBadGroup
		}
		start := 8 + k
		out = append(out, groupCmd{id: id, cmd: data[start : start+int(size)]})
		data = data[start+int(size):]
	}
	if len(data) != 0 {
		return nil, errBadGroup
	}
	return out, nil
}

// applyGroup applies each command of a group entry, answering each
// command's waiter with its own result. A group that does not decode is a
// damaged log: nothing of it is applied, and the node stops.
func (n *Node) applyGroup(e *raftpb.Entry) error {
	cmds, err := decodeGroup(e.GetData()[8:])
	if err != nil {
		return fmt.Errorf("%w at %d", err, e.GetIndex())
	}
	for pos, c := range cmds {
		res := n.sm.Apply(seqOf(e.GetIndex(), pos), c.cmd)
		n.proposals.Trigger(c.id, Applied{Index: e.GetIndex(), Term: e.GetTerm(), Result: res})
	}
	n.groups.landedIn(cmds)
	return nil
}

// mergeForwarded adds the commands of a proposal a follower forwarded to
// this leader's pending group (see the top of this file) and reports
// whether it did; when it did not (not the leader, no group commit, a
// conf change or raftnode's own command among them, no room), raft takes
// the proposal as it came. A group that does not decode is left to raft
// too: proposed as it came, it stops every node that applies it, as any
// damaged entry does.
func (n *Node) mergeForwarded(m *raftpb.Message) bool {
	if m.GetType() != raftpb.MsgProp || n.cfg.NoGroupCommit || n.lead.Load() != n.cfg.ID {
		return false
	}
	var cmds []groupCmd
	for _, e := range m.GetEntries() {
		data := e.GetData()
		if e.GetType() != raftpb.EntryNormal || len(data) < 8 {
			return false
		}
		switch id := binary.BigEndian.Uint64(data); {
		case id == groupMarker:
			g, err := decodeGroup(data[8:])
			if err != nil {
				return false
			}
			cmds = append(cmds, g...)
		case isInternal(id):
			return false
		default:
			cmds = append(cmds, groupCmd{id: id, cmd: data[8:]})
		}
	}
	if len(cmds) == 0 || !n.groups.forward(cmds, n.term.Load()) {
		return false
	}
	n.counts.mergedForwards.Add(1)
	n.counts.mergedCommands.Add(uint64(len(cmds)))
	return true
}

// SeqPosBits: the state machine's seq for a command is its entry's index
// << SeqPosBits | its position in the entry (0 for an entry of one).
const SeqPosBits = 16

func seqOf(index uint64, pos int) uint64 { return index<<SeqPosBits | uint64(pos) }
