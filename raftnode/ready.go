package raftnode

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/raftq/raftq/internal/failpoint"
)

// handleReady processes one Ready in the order raft's README requires
// (see ../shared/RAFT-NOTES.md rules 3-7). Any error is fatal to the node.
func (n *Node) handleReady(rd raft.Ready) error {
	n.count(rd)
	if !raft.IsEmptyHardState(rd.HardState) {
		n.term.Store(rd.HardState.GetTerm())
		n.committed.Store(rd.HardState.GetCommit())
	}
	if rd.SoftState != nil {
		n.setLeader(rd.SoftState.Lead)
	}
	// 0. A leader sends first, replicating in parallel with its own fsync
	//    (Raft thesis §10.2.1, as etcd does): its messages carry no vote,
	//    and nothing is applied or answered before the save below.
	//    A follower sends its forwards the same way (proposals and read
	//    requests for the leader): they carry nothing of this node's state,
	//    so they need not wait for its fsync; its other messages do.
	leader := n.lead.Load() == n.cfg.ID
	msgs := rd.Messages
	if leader {
		n.send(msgs)
	} else if forwards, rest := splitForwards(msgs); len(forwards) > 0 {
		n.send(forwards)
		msgs = rest
	}
	// 0b. Committed entries saved by earlier Readys are durable already:
	//    apply them (and answer their clients) before this Ready's fsync,
	//    as etcd does, instead of after it. Not with a snapshot to restore
	//    or a conf change among them (their order is kept as below).
	committed := rd.CommittedEntries
	if early := durablePrefix(rd); len(early) > 0 {
		failpoint.Inject(failpoint.RaftBeforeApply)
		if err := n.apply(early); err != nil {
			return err
		}
		failpoint.Inject(failpoint.RaftAfterApply)
		committed = committed[len(early):]
	}
	// 1. Persist: snapshot file, WAL snapshot record, entries, HardState
	//    (fsync), then the in-memory log. Nothing below may run before this
	//    but the durable entries above.
	failpoint.Inject(failpoint.RaftBeforeSave)
	if err := n.store.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		return fmt.Errorf("raftnode: persist ready: %w", err)
	}
	failpoint.Inject(failpoint.RaftAfterSave)
	n.notePublishes(rd.Entries)
	// 2. A received snapshot replaces the state machine before any entry.
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.restore(rd.Snapshot); err != nil {
			return err
		}
	}
	n.resolveReads(rd.ReadStates)
	// 3. A follower sends now, after its save; one applying a conf change
	//    sends afterwards, so it never counts a vote from a member it is
	//    about to remove.
	afterApply := !leader && hasConfChange(committed)
	if !leader && !afterApply && len(msgs) > 0 {
		n.send(msgs)
	}
	// 4. Apply the other committed entries, in order.
	if len(committed) > 0 {
		failpoint.Inject(failpoint.RaftBeforeApply)
		if err := n.apply(committed); err != nil {
			return err
		}
		failpoint.Inject(failpoint.RaftAfterApply)
	}
	if afterApply && len(msgs) > 0 {
		n.send(msgs)
	}
	if err := n.maybeSnapshot(); err != nil {
		return err
	}
	// 5. Advance last.
	n.raft.Advance()
	return nil
}

func (n *Node) count(rd raft.Ready) {
	n.counts.readys.Add(1)
	n.counts.savedEntries.Add(uint64(len(rd.Entries)))
	n.counts.appliedEntries.Add(uint64(len(rd.CommittedEntries)))
	n.counts.messagesSent.Add(uint64(len(rd.Messages)))
	if rd.MustSync {
		n.counts.syncedReadys.Add(1)
	}
}

// durablePrefix is the part of rd's committed entries that earlier
// Readys saved: below the first entry rd carries to save (RAFT-NOTES rule
// 5: an entry in rd itself, which a single voter may see committed, is
// applied only after the save). None when rd carries a snapshot, which is
// restored first, or when the prefix holds a conf change.
func durablePrefix(rd raft.Ready) []*raftpb.Entry {
	if !raft.IsEmptySnap(rd.Snapshot) || len(rd.CommittedEntries) == 0 {
		return nil
	}
	ents := rd.CommittedEntries
	if len(rd.Entries) > 0 {
		first := rd.Entries[0].GetIndex()
		i := 0
		for i < len(ents) && ents[i].GetIndex() < first {
			i++
		}
		ents = ents[:i]
	}
	if hasConfChange(ents) {
		return nil
	}
	return ents
}

// splitForwards separates the messages a follower may send before its
// save (isForward) from the rest, keeping each part's order. Ready's slice
// is left as it is (rule 9): the parts are new slices, or msgs itself when
// one part is empty.
func splitForwards(msgs []*raftpb.Message) (forwards, rest []*raftpb.Message) {
	n := 0
	for _, m := range msgs {
		if isForward(m) {
			n++
		}
	}
	switch n {
	case 0:
		return nil, msgs
	case len(msgs):
		return msgs, nil
	}
	forwards = make([]*raftpb.Message, 0, n)
	rest = make([]*raftpb.Message, 0, len(msgs)-n)
	for _, m := range msgs {
		if isForward(m) {
			forwards = append(forwards, m)
		} else {
			rest = append(rest, m)
		}
	}
	return forwards, rest
}

// isForward says m is a request a follower passes on to the leader: a
// proposal or a read-index request. Neither carries this node's log, term
// or vote (answers to appends and votes do, and must wait for the save:
// RAFT-NOTES rule 4).
func isForward(m *raftpb.Message) bool {
	switch m.GetType() {
	case raftpb.MsgProp, raftpb.MsgReadIndex:
		return true
	}
	return false
}

func hasConfChange(ents []*raftpb.Entry) bool {
	for _, e := range ents {
		if e.GetType() != raftpb.EntryNormal {
			return true
		}
	}
	return false
}

// send hands messages to the transport. A snapshot goes as etcd sends
// its own: the message, then its state file streamed from disk, so no
// snapshot is ever held in memory whole. It carries the current
// ConfState: the one stored with it can predate later conf changes.
// Ready's slice and messages stay untouched (rule 9): patched copies are
// sent.
func (n *Node) send(msgs []*raftpb.Message) {
	var out []*raftpb.Message // nil until a snapshot needs a patched copy
	for i, m := range msgs {
		if m.GetType() != raftpb.MsgSnap {
			if out != nil {
				out = append(out, m)
			}
			continue
		}
		if out == nil {
			out = append(make([]*raftpb.Message, 0, len(msgs)), msgs[:i]...)
		}
		s := m.GetSnapshot()
		// A new message and snapshot (raft's MsgSnap carries only these
		// fields); the data is shared, read-only.
		sm := &raftpb.Message{Type: m.Type, To: m.To, From: m.From, Term: m.Term,
			Snapshot: &raftpb.Snapshot{Data: s.GetData(), Metadata: &raftpb.SnapshotMetadata{
				Index: new(s.GetMetadata().GetIndex()), Term: new(s.GetMetadata().GetTerm()), ConfState: n.confState,
			}}}
		rc, size, ok, err := n.store.SnapshotState(s)
		switch {
		case err != nil:
			n.lg.Warn("cannot send snapshot", zap.Uint64("to", m.GetTo()), zap.Error(err))
			n.raft.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
		case ok:
			n.lg.Info("sending snapshot", zap.Uint64("to", m.GetTo()), zap.Uint64("index", s.GetMetadata().GetIndex()), zap.Int64("bytes", size))
			n.transport.SendSnapshot(snap.NewMessage(sm, rc, size))
		default: // a snapshot from before state files: inline
			out = append(out, sm)
		}
	}
	if out == nil {
		out = msgs
	}
	n.transport.Send(out)
}

func (n *Node) resolveReads(states []raft.ReadState) {
	for _, rs := range states {
		if len(rs.RequestCtx) == 8 {
			n.reads.answer(binary.BigEndian.Uint64(rs.RequestCtx), rs.Index)
		}
	}
}

// apply feeds committed entries to the state machine and membership.
func (n *Node) apply(ents []*raftpb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	applied := n.applied.Load()
	if first := ents[0].GetIndex(); first > applied+1 {
		n.lg.Panic("gap in committed entries", zap.Uint64("first", first), zap.Uint64("applied", applied))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range ents {
		if e.GetIndex() <= applied {
			continue // already in the state machine (restored from a snapshot)
		}
		if err := n.applyEntry(e); err != nil {
			return err
		}
		n.appliedBytes += uint64(len(e.GetData()))
		applied = e.GetIndex()
		n.appliedTerm.Store(e.GetTerm())
	}
	n.applied.Store(applied)
	n.applyWait.Trigger(applied)
	return nil
}

func (n *Node) applyEntry(e *raftpb.Entry) error {
	switch e.GetType() {
	case raftpb.EntryNormal:
		data := e.GetData()
		if len(data) < 8 {
			return nil // a new leader's empty entry
		}
		id := binary.BigEndian.Uint64(data)
		var res any
		switch {
		case id == groupMarker:
			return n.applyGroup(e)
		case isInternal(id):
			res = n.applyInternal(data[8:])
		default:
			res = n.sm.Apply(seqOf(e.GetIndex(), 0), data[8:])
		}
		n.proposals.Trigger(id, Applied{Index: e.GetIndex(), Term: e.GetTerm(), Result: res})
		n.groups.landed(id)
	case raftpb.EntryConfChange:
		var cc raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
			return fmt.Errorf("raftnode: decode conf change at %d: %w", e.GetIndex(), err)
		}
		// Decoded before raft applies the change: a member that raft
		// would count but the transport could not reach (no peer URL,
		// snapshots sent to it never reported) must not come to be.
		// Only AddMember proposes contexts, and only valid ones, so a bad
		// one is a damaged log: stop (rule 8).
		mc, err := decodeMemberContext(cc.GetContext())
		if err != nil {
			return fmt.Errorf("raftnode: conf change at %d for member %d: %w", e.GetIndex(), cc.GetNodeId(), err)
		}
		n.confState = n.raft.ApplyConfChange(&cc)
		n.applyMembership(&cc, mc)
		n.proposals.Trigger(cc.GetId(), Applied{Index: e.GetIndex(), Term: e.GetTerm()})
	case raftpb.EntryConfChangeV2:
		// raftq proposes only v1 changes; apply v2 ones for raft's sake.
		var cc raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
			return fmt.Errorf("raftnode: decode conf change v2 at %d: %w", e.GetIndex(), err)
		}
		n.confState = n.raft.ApplyConfChange(&cc)
	}
	return nil
}

// applyMembership records a conf change whose context is mc; the caller
// holds n.mu.
func (n *Node) applyMembership(cc *raftpb.ConfChange, mc memberContext) {
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		n.members.add(id, mc, cc.GetType() == raftpb.ConfChangeAddLearnerNode)
		n.addPeer(*n.members.members[id])
		n.lg.Info("member added", zap.Uint64("member", id), zap.Bool("learner", n.members.members[id].Learner))
	case raftpb.ConfChangeRemoveNode:
		n.members.remove(id)
		n.lg.Info("member removed", zap.Uint64("member", id))
		if id == n.cfg.ID {
			n.removedSelf = true
		} else {
			n.transport.RemovePeer(types.ID(id))
		}
	}
}

func (n *Node) addPeer(m Member) {
	if m.ID == n.cfg.ID || len(m.PeerURLs) == 0 {
		return
	}
	n.transport.AddPeer(types.ID(m.ID), m.PeerURLs) // no-op when known
}

// restore replaces the state machine and membership with a snapshot's.
func (n *Node) restore(snap *raftpb.Snapshot) error {
	md := snap.GetMetadata()
	meta, state, err := n.store.OpenSnapshot(snap)
	if err != nil {
		return fmt.Errorf("raftnode: snapshot at %d: %w", md.GetIndex(), err)
	}
	members, smData, err := decodeSnapshot(meta)
	if err != nil {
		return fmt.Errorf("raftnode: snapshot at %d: %w", md.GetIndex(), err)
	}
	var r io.Reader = bytes.NewReader(smData) // state inline: an old snapshot
	if state != nil {
		defer state.Close()
		r = state
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.sm.RestoreFrom(r); err != nil {
		return fmt.Errorf("raftnode: restore state machine at %d: %w", md.GetIndex(), err)
	}
	n.members = members
	n.confState = md.GetConfState()
	n.snapshotIndex = md.GetIndex()
	n.snapIndex.Store(n.snapshotIndex)
	n.appliedBytes = 0
	n.appliedTerm.Store(md.GetTerm())
	n.applied.Store(md.GetIndex())
	n.applyWait.Trigger(md.GetIndex())
	if n.raft != nil { // at boot, Run adds the peers
		for _, m := range members.list() {
			n.addPeer(m)
		}
	}
	n.lg.Info("restored snapshot", zap.Uint64("index", md.GetIndex()), zap.Uint64("term", md.GetTerm()))
	return nil
}

// maybeSnapshot snapshots the state machine every SnapshotCount applied
// entries or SnapshotBytes of them, and compacts the in-memory log behind
// it.
func (n *Node) maybeSnapshot() error {
	applied := n.applied.Load()
	count := applied - n.snapshotIndex
	bySize := n.cfg.SnapshotBytes > 0 && n.appliedBytes >= n.cfg.SnapshotBytes
	if n.snapshotting || count == 0 || count < n.cfg.SnapshotCount && !bySize {
		return nil
	}
	// Only the raft goroutine writes members, so no lock is needed to
	// read them here. Capture here (cheap), encode and write elsewhere,
	// so a deep queue does not stall the Ready loop.
	start := time.Now()
	js, err := json.Marshal(n.members.state())
	if err != nil {
		return fmt.Errorf("raftnode: encode membership: %w", err)
	}
	n.mu.Lock() // Capture marks the state's records copy-on-write
	locked := time.Now()
	write := n.sm.Capture()
	n.mu.Unlock()
	capture := time.Since(locked)
	var compactTo uint64
	if keep := n.cfg.catchUpEntries(n.appliedBytes / count); applied > keep {
		compactTo = applied - keep
	}
	n.appliedBytes = 0
	cs := n.confState // replaced, never mutated, on conf changes
	stall := time.Since(start)
	n.snapshotting = true
	n.snapWG.Add(1)
	go func() {
		defer n.snapWG.Done()
		res := snapResult{index: applied, compactTo: compactTo, stall: stall, capture: capture}
		size, err := n.store.CreateSnapshot(applied, compactTo, cs, joinSnapshot(js, nil), write)
		if err != nil {
			res.err = fmt.Errorf("raftnode: save snapshot: %w", err)
		}
		res.bytes = size
		res.took = time.Since(start)
		n.snapDone <- res
	}()
	return nil
}

// snapResult is a background snapshot's outcome, handled by Run.
type snapResult struct {
	index, compactTo uint64
	bytes            int64
	stall, took      time.Duration
	capture          time.Duration // the part of stall in Capture
	err              error
}

// snapshotSaved records a finished background snapshot.
func (n *Node) snapshotSaved(r snapResult) error {
	n.snapshotting = false
	if r.err != nil {
		return r.err
	}

	n.snapshotIndex = max(n.snapshotIndex, r.index)
	n.snapIndex.Store(n.snapshotIndex)
	n.counts.snapshots.Add(1)
	n.counts.snapshotNanos.Add(uint64(r.took))
	n.lg.Info("saved snapshot", zap.Uint64("index", r.index), zap.Uint64("compacted-to", r.compactTo), zap.Int64("bytes", r.bytes),
		zap.Duration("took", r.stall), // how long the Ready loop waited
		zap.Duration("capture", r.capture),
		zap.Duration("in-background", r.took))
	return nil
}
