package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/raftnode"
)

// The membership routes of httpapi.Cluster, over raftnode.

func (s *service) Nodes(ctx context.Context) (httpapi.Nodes, error) {
	if err := s.node.ReadBarrier(ctx); err != nil {
		return httpapi.Nodes{}, unavailable(err)
	}
	st := s.node.Status()
	return nodesOf(st.Members, st.Leader), nil
}

func nodesOf(members []raftnode.Member, leader uint64) httpapi.Nodes {
	out := httpapi.Nodes{Leader: leader, Nodes: []httpapi.Node{}}
	for _, m := range members {
		out.Nodes = append(out.Nodes, apiNode(m, leader))
	}
	return out
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
	members, err := s.node.RemoveMember(ctx, id)
	if err != nil {
		return httpapi.Nodes{}, memberErr(err)
	}
	// The membership as the removal left it, without a read barrier: a
	// node that removed itself has stopped and could not pass one.
	return nodesOf(members, s.node.Status().Leader), nil
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
	case errors.Is(err, raftnode.ErrWouldLoseQuorum), errors.Is(err, raftnode.ErrReadTimeout), errors.Is(err, raftnode.ErrUnreachable),
		errors.Is(err, raftnode.ErrTransferTimeout): // a removal that could not move leadership off its member
		// Refused before anything was proposed.
		return fmt.Errorf("%w: %w: %w", httpapi.ErrUnavailable, httpapi.ErrNotApplied, err)
	case errors.Is(err, raftnode.ErrNoLeader), errors.Is(err, raftnode.ErrTimeout), errors.Is(err, raftnode.ErrLeaderChanged),
		errors.Is(err, raftnode.ErrStopped):
		return unavailable(err)
	default:
		return fmt.Errorf("%w: %w", httpapi.ErrInvalid, err)
	}
}
