package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/queuefsm"
	"github.com/raftq/raftq/raftnode"
)

// service implements httpapi.Queue and httpapi.Cluster over a raft node and
// the queue state machine it replicates.
type service struct {
	node *raftnode.Node
	fsm  *queuefsm.FSM
}

func (s *service) Enqueue(ctx context.Context, queue, contentType string, body []byte) (uint64, httpapi.LogPosition, error) {
	if err := checkName(queue); err != nil {
		return 0, httpapi.LogPosition{}, err
	}
	a, err := s.node.Propose(ctx, queuefsm.EncodeEnqueue(queue, contentType, body))
	if err != nil {
		return 0, httpapi.LogPosition{}, unavailable(err)
	}
	r, err := result[queuefsm.EnqueueResult](a)
	return r.ID, position(a), err
}

func (s *service) Dequeue(ctx context.Context, queue string) (httpapi.Message, bool, httpapi.LogPosition, error) {
	if err := checkName(queue); err != nil {
		return httpapi.Message{}, false, httpapi.LogPosition{}, err
	}
	a, err := s.node.Propose(ctx, queuefsm.EncodeDequeue(queue))
	if err != nil {
		return httpapi.Message{}, false, httpapi.LogPosition{}, unavailable(err)
	}
	r, err := result[queuefsm.DequeueResult](a)
	m := r.Message
	return httpapi.Message{ID: m.ID, ContentType: m.ContentType, Body: m.Body}, r.Found, position(a), err
}

func (s *service) Queues(ctx context.Context) ([]httpapi.QueueInfo, error) {
	if err := s.node.ReadBarrier(ctx); err != nil {
		return nil, unavailable(err)
	}
	var out []httpapi.QueueInfo
	s.node.View(func() {
		for _, q := range s.fsm.Queues() {
			out = append(out, httpapi.QueueInfo{Name: q.Name, Depth: q.Depth})
		}
	})
	return out, nil
}

func (s *service) Nodes(ctx context.Context) (httpapi.Nodes, error) {
	if err := s.node.ReadBarrier(ctx); err != nil {
		return httpapi.Nodes{}, unavailable(err)
	}
	st := s.node.Status()
	out := httpapi.Nodes{Leader: st.Leader, Nodes: []httpapi.Node{}}
	for _, m := range st.Members {
		out.Nodes = append(out.Nodes, apiNode(m, st.Leader))
	}
	return out, nil
}

func apiNode(m raftnode.Member, leader uint64) httpapi.Node {
	return httpapi.Node{ID: m.ID, PeerURLs: m.PeerURLs, APIURL: m.APIURL, Learner: m.Learner, IsLeader: m.ID == leader}
}

func (s *service) AddNode(ctx context.Context, spec httpapi.NodeSpec) (httpapi.Node, error) {
	m, err := s.node.AddMember(ctx, spec.ID, spec.PeerURL, spec.Learner)
	if err != nil {
		return httpapi.Node{}, memberErr(err)
	}
	return apiNode(m, s.node.Status().Leader), nil
}

func (s *service) RemoveNode(ctx context.Context, id uint64) (httpapi.Nodes, error) {
	if _, err := s.node.RemoveMember(ctx, id); err != nil {
		return httpapi.Nodes{}, memberErr(err)
	}
	return s.Nodes(ctx)
}

func (s *service) PromoteNode(ctx context.Context, id uint64) (httpapi.Node, error) {
	m, err := s.node.PromoteMember(ctx, id)
	var nl *raftnode.NotLeaderError
	if errors.As(err, &nl) {
		for _, m := range s.node.Status().Members {
			if m.ID == nl.Leader && m.APIURL != "" {
				return httpapi.Node{}, &httpapi.LeaderElsewhereError{URL: m.APIURL}
			}
		}
		return httpapi.Node{}, fmt.Errorf("%w: %w: %w (its API URL is not known yet)", httpapi.ErrUnavailable, httpapi.ErrNotApplied, err)
	}
	if err != nil {
		return httpapi.Node{}, memberErr(err)
	}
	return apiNode(m, s.node.Status().Leader), nil
}

func (s *service) TransferLeader(ctx context.Context, id uint64) (httpapi.Nodes, error) {
	if err := s.node.TransferLeadership(ctx, id); err != nil {
		if errors.Is(err, raftnode.ErrTransferTimeout) {
			return httpapi.Nodes{}, fmt.Errorf("%w: %w", httpapi.ErrGatewayTimeout, err)
		}
		return httpapi.Nodes{}, memberErr(err)
	}
	return s.Nodes(ctx)
}

// memberErr maps raftnode's membership errors to API statuses.
func memberErr(err error) error {
	switch {
	case errors.Is(err, raftnode.ErrUnknownMember):
		return fmt.Errorf("%w: %w", httpapi.ErrNotFound, err)
	case errors.Is(err, raftnode.ErrIDUsed), errors.Is(err, raftnode.ErrPeerURLInUse),
		errors.Is(err, raftnode.ErrNotLearner), errors.Is(err, raftnode.ErrIsLearner),
		errors.Is(err, raftnode.ErrLearnerBehind), errors.Is(err, raftnode.ErrLastVoter):
		return fmt.Errorf("%w: %w", httpapi.ErrConflict, err)
	case errors.Is(err, raftnode.ErrWouldLoseQuorum), errors.Is(err, raftnode.ErrReadTimeout), errors.Is(err, raftnode.ErrUnreachable):
		// Refused before anything was proposed.
		return fmt.Errorf("%w: %w: %w", httpapi.ErrUnavailable, httpapi.ErrNotApplied, err)
	case errors.Is(err, raftnode.ErrNoLeader), errors.Is(err, raftnode.ErrTimeout), errors.Is(err, raftnode.ErrLeaderChanged),
		errors.Is(err, raftnode.ErrStopped):
		return unavailable(err)
	default:
		return fmt.Errorf("%w: %w", httpapi.ErrInvalid, err)
	}
}

// checkName refuses an invalid queue name before it costs a log entry; the
// state machine checks again, deterministically, when applying.
func checkName(queue string) error {
	if err := queuefsm.ValidateName(queue); err != nil {
		return fmt.Errorf("%w: %w", httpapi.ErrInvalid, err)
	}
	return nil
}

func position(a raftnode.Applied) httpapi.LogPosition {
	return httpapi.LogPosition{Index: a.Index, Term: a.Term}
}

// result unpacks the state machine's answer. An error answer means the
// command was refused identically on every replica.
func result[T any](a raftnode.Applied) (T, error) {
	var zero T
	switch r := a.Result.(type) {
	case T:
		return r, nil
	case error:
		if errors.Is(r, queuefsm.ErrInvalidName) {
			return zero, fmt.Errorf("%w: %w", httpapi.ErrInvalid, r)
		}
		return zero, r
	default:
		return zero, fmt.Errorf("raftq: unexpected state machine result %T", a.Result)
	}
}

// unavailable marks raft-level failures (no leader, deadline, stopping),
// and says when a write definitely did not happen.
func unavailable(err error) error {
	if errors.Is(err, raftnode.ErrNoLeader) {
		return fmt.Errorf("%w: %w: %w", httpapi.ErrUnavailable, httpapi.ErrNotApplied, err)
	}
	return fmt.Errorf("%w: %w", httpapi.ErrUnavailable, err)
}

// LocalState hashes the state machine at this node's applied index.
func (s *service) LocalState() (httpapi.LocalState, error) {
	var (
		data    []byte
		applied uint64
		err     error
	)
	s.node.View(func() {
		applied = s.node.Applied()
		data, err = s.fsm.Snapshot()
	})
	if err != nil {
		return httpapi.LocalState{}, fmt.Errorf("raftq: snapshot for state hash: %w", err)
	}
	sum := sha256.Sum256(data)
	return httpapi.LocalState{ID: s.node.ID(), Leader: s.node.Status().Leader, Applied: applied, Hash: hex.EncodeToString(sum[:])}, nil
}
