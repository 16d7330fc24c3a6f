package raftnode

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// Errors of membership changes. Callers branch on them.
var (
	ErrUnknownMember = errors.New("raftnode: no such member")
	// ErrIDUsed: the id is a member, or was one (ids are never reused).
	ErrIDUsed       = errors.New("raftnode: id is or was a member")
	ErrPeerURLInUse = errors.New("raftnode: peer URL already in use")
	ErrNotLearner   = errors.New("raftnode: member is not a learner")
	ErrIsLearner    = errors.New("raftnode: member is a learner")
	// ErrLearnerBehind: promotion refused while the learner's log is more
	// than MaxLearnerLag entries behind the leader's.
	ErrLearnerBehind = errors.New("raftnode: learner is too far behind the leader")
	ErrLastVoter     = errors.New("raftnode: cannot remove the last voter")
	// ErrWouldLoseQuorum: the change would leave fewer active voters than
	// its new quorum needs (etcd's strict reconfiguration check). Nothing
	// was proposed.
	ErrWouldLoseQuorum = errors.New("raftnode: change refused: not enough active voters for the new quorum")
	// ErrUnreachable: the target of a leadership transfer is not connected
	// to this node. Nothing was changed.
	ErrUnreachable = errors.New("raftnode: member is not reachable")
	// ErrTransferTimeout: leadership did not move in time.
	ErrTransferTimeout = errors.New("raftnode: leadership transfer did not finish in time")
	// ErrRemoved: this node was removed from the cluster; it stops.
	ErrRemoved = errors.New("raftnode: this node was removed from the cluster")
)

// NotLeaderError: the operation needs the leader's view (a learner's
// progress); Leader says who to ask (0: none known).
type NotLeaderError struct{ Leader uint64 }

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("raftnode: not the leader (leader is %d)", e.Leader)
}

// MaxLearnerLag is how far behind the leader's log a learner may be and
// still be promoted.
const MaxLearnerLag = 1000

// Internal entries (raftnode's own commands, not the state machine's) carry
// a request id whose top 16 bits, the member id in idutil's ids, are zero.
func isInternal(id uint64) bool { return id>>48 == 0 }

// isInternalEntry reports whether a normal entry's data is raftnode's own
// command (not a group, whose marker is 0).
func isInternalEntry(data []byte) bool {
	id := binary.BigEndian.Uint64(data)
	return id != groupMarker && isInternal(id)
}

// internalID is never 0, the group marker.
func internalID() uint64 { return max(1, uint64(time.Now().UnixNano())&(1<<48-1)) }

// internalCommand is the payload of an internal entry.
type internalCommand struct {
	Publish *publish `json:"publish,omitempty"`
}

// publish records the client API URL of a member, so every node can list
// every API URL.
type publish struct {
	ID     uint64 `json:"id"`
	APIURL string `json:"api_url"`
}

func (n *Node) applyInternal(data []byte) any {
	var c internalCommand
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("raftnode: bad internal entry: %w", err)
	}
	if p := c.Publish; p != nil {
		if m, ok := n.members.members[p.ID]; ok {
			m.APIURL = p.APIURL
		}
	}
	return nil
}

// PublishAPIURL proposes this node's API URL (Config.APIURL) until the
// log has it, so every node lists it, or until ctx ends or the node
// stops. The caller runs it beside Run and waits for it.
func (n *Node) PublishAPIURL(ctx context.Context) {
	if n.cfg.APIURL == "" {
		return
	}
	select {
	case <-n.started:
	case <-n.stopped:
		return
	case <-ctx.Done():
		return
	}
	data, err := json.Marshal(internalCommand{Publish: &publish{ID: n.cfg.ID, APIURL: n.cfg.APIURL}})
	if err != nil {
		n.lg.Error("cannot encode the API URL to publish; other nodes will not list it", zap.String("api-url", n.cfg.APIURL), zap.Error(err))
		return
	}
	for {
		n.mu.RLock()
		m := n.members.members[n.cfg.ID]
		done := m != nil && m.APIURL == n.cfg.APIURL
		n.mu.RUnlock()
		if done {
			return
		}
		if m != nil && n.lead.Load() != raft.None {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := n.proposeAs(pctx, internalID(), data, false)
			cancel()
			if err == nil {
				n.lg.Info("published API URL", zap.String("api-url", n.cfg.APIURL))
			} else if ctx.Err() == nil {
				n.lg.Info("publishing API URL failed; retrying", zap.String("api-url", n.cfg.APIURL), zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-n.stopped:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// changeMembership runs one conf change: a read barrier so that checks see
// the latest membership, the caller's checks, then propose and wait.
func (n *Node) changeMembership(ctx context.Context, check func(*membership) error, cc *raftpb.ConfChange) (Applied, error) {
	n.confMu.Lock()
	defer n.confMu.Unlock()
	if err := n.ReadBarrier(ctx); err != nil {
		return Applied{}, err
	}
	n.mu.RLock()
	err := check(n.members)
	n.mu.RUnlock()
	if err != nil {
		return Applied{}, err
	}
	cc.Id = new(n.ids.Next())
	ch := n.proposals.Register(cc.GetId())
	if err := n.proposeUntilAccepted(ctx, false, func() error { return n.raft.ProposeConfChange(ctx, cc) }); err != nil {
		n.proposals.Trigger(cc.GetId(), nil)
		return Applied{}, err
	}
	return n.await(ctx, cc.GetId(), ch)
}

// active reports whether member id is this node or currently reachable.
func (n *Node) active(id uint64) bool {
	return id == n.cfg.ID || !n.transport.ActiveSince(types.ID(id)).IsZero()
}

// quorumAfter refuses a change whose voters would not have a quorum of
// active members.
func (n *Node) quorumAfter(voters []uint64) error {
	active := 0
	for _, v := range voters {
		if n.active(v) {
			active++
		}
	}
	if active < len(voters)/2+1 {
		return fmt.Errorf("%w (%d of %d voters active)", ErrWouldLoseQuorum, active, len(voters))
	}
	return nil
}

// AddMember adds a voter or a learner that will be reached at peerURL. The
// node itself is started afterwards with --join.
func (n *Node) AddMember(ctx context.Context, id uint64, peerURL string, learner bool) (Member, error) {
	if id == 0 || id>>16 != 0 {
		return Member{}, fmt.Errorf("raftnode: member id must be between 1 and 65535")
	}
	if u, err := url.Parse(peerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
		return Member{}, fmt.Errorf("raftnode: peer URL %q must look like http://host:port", peerURL)
	}
	typ := raftpb.ConfChangeAddNode
	if learner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	check := func(ms *membership) error {
		if _, ok := ms.members[id]; ok || ms.removed[id] {
			return fmt.Errorf("%w: %d", ErrIDUsed, id)
		}
		if ms.peerURLInUse(peerURL) {
			return fmt.Errorf("%w: %s", ErrPeerURLInUse, peerURL)
		}
		if learner {
			return nil
		}
		return n.quorumAfter(append(ms.voters(), id))
	}
	cc := &raftpb.ConfChange{Type: typ.Enum(), NodeId: new(id), Context: contextFor(peerURL)}
	if _, err := n.changeMembership(ctx, check, cc); err != nil {
		return Member{}, err
	}
	return n.member(id)
}

func (n *Node) member(id uint64) (Member, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	m, ok := n.members.members[id]
	if !ok {
		return Member{}, fmt.Errorf("%w: %d", ErrUnknownMember, id)
	}
	c := *m
	return c, nil
}

// RemoveMember removes a member and returns the remaining ones. A leader
// being removed first hands leadership to another voter.
func (n *Node) RemoveMember(ctx context.Context, id uint64) ([]Member, error) {
	check := func(ms *membership) error {
		m, ok := ms.members[id]
		if !ok {
			return fmt.Errorf("%w: %d", ErrUnknownMember, id)
		}
		if m.Learner {
			return nil
		}
		var rest []uint64
		for _, v := range ms.voters() {
			if v != id {
				rest = append(rest, v)
			}
		}
		if len(rest) == 0 {
			return ErrLastVoter
		}
		return n.quorumAfter(rest)
	}
	if id == n.lead.Load() {
		n.mu.RLock()
		err := check(n.members)
		var to uint64
		for _, v := range n.members.voters() {
			if v != id && n.active(v) {
				to = v
				break
			}
		}
		n.mu.RUnlock()
		if err != nil {
			return nil, err
		}
		if err := n.TransferLeadership(ctx, to); err != nil {
			return nil, fmt.Errorf("raftnode: moving leadership off the member being removed: %w", err)
		}
	}
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(id)}
	if _, err := n.changeMembership(ctx, check, cc); err != nil {
		return nil, err
	}
	return n.Status().Members, nil
}

// PromoteMember turns a learner into a voter, once its log is within
// MaxLearnerLag entries of the leader's. Only the leader knows that: other
// nodes answer NotLeaderError.
func (n *Node) PromoteMember(ctx context.Context, id uint64) (Member, error) {
	check := func(ms *membership) error {
		m, ok := ms.members[id]
		if !ok {
			return fmt.Errorf("%w: %d", ErrUnknownMember, id)
		}
		if !m.Learner {
			return fmt.Errorf("%w: %d", ErrNotLearner, id)
		}
		st := n.raft.Status()
		if st.RaftState != raft.StateLeader {
			return &NotLeaderError{Leader: st.Lead}
		}
		pr, ok := st.Progress[id]
		if !ok {
			return fmt.Errorf("%w: %d", ErrUnknownMember, id)
		}
		if !n.active(id) {
			return fmt.Errorf("%w: it is not connected to this leader", ErrLearnerBehind)
		}
		if last := st.Progress[n.cfg.ID].Match; pr.Match+MaxLearnerLag < last {
			return fmt.Errorf("%w: it has %d of %d entries", ErrLearnerBehind, pr.Match, last)
		}
		return n.quorumAfter(append(ms.voters(), id))
	}
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(id)}
	if _, err := n.changeMembership(ctx, check, cc); err != nil {
		return Member{}, err
	}
	return n.member(id)
}

// TransferLeadership moves leadership to voter id and waits until it leads.
func (n *Node) TransferLeadership(ctx context.Context, id uint64) error {
	m, err := n.member(id)
	if err != nil {
		return err
	}
	if m.Learner {
		return fmt.Errorf("%w: %d", ErrIsLearner, id)
	}
	if err := n.waitStarted(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(n.cfg.TickInterval)
	defer tick.Stop()
	for lead := n.lead.Load(); lead != id; lead = n.lead.Load() {
		if !n.active(id) {
			// raft would hold proposals for an election timeout waiting
			// for a transfer that cannot finish. Checked at every round:
			// a target that dies just before or during the transfer is
			// noticed by the transport a moment later.
			return fmt.Errorf("%w: node %d is not reachable", ErrUnreachable, id)
		}
		if lead != raft.None {
			n.raft.TransferLeadership(ctx, lead, id)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: node %d leads", ErrTransferTimeout, n.lead.Load())
		case <-n.stopped:
			return ErrStopped
		}
	}
	return nil
}
