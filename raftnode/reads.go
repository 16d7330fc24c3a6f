package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
)

// readRound is one ReadIndex request, shared by every ReadBarrier that
// joined it before it was sent (as etcd's linearizable read loop): a
// burst of reads costs the leader one heartbeat round, not one each.
type readRound struct {
	done  chan struct{} // closed once index is set
	index uint64        // the leader's commit index when it answered
}

// ReadBarrier returns once this node has applied everything the leader had
// committed when it was called, so a read of the state machine after it is
// linearizable. It joins the next ReadIndex round not yet sent: that
// round's answer is at least as fresh as the call.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if err := n.waitStarted(ctx); err != nil {
		return err
	}
	r := n.joinRead()
	select {
	case <-r.done:
		return n.waitApplied(ctx, r.index)
	case <-ctx.Done():
		return n.readErr(ctx.Err())
	case <-n.stopped:
		return ErrStopped
	}
}

// joinRead returns the round not yet sent, creating it (and waking the
// read loop) if there is none.
func (n *Node) joinRead() *readRound {
	n.readMu.Lock()
	defer n.readMu.Unlock()
	if n.readNext == nil {
		n.readNext = &readRound{done: make(chan struct{})}
		select {
		case n.readKick <- struct{}{}:
		default: // already woken
		}
	}
	return n.readNext
}

// readLoop sends one round at a time until ctx ends: the round waiting
// is taken (later callers join a new one), then asked until answered.
func (n *Node) readLoop(ctx context.Context) {
	for {
		select {
		case <-n.readKick:
		case <-ctx.Done():
			return
		}
		n.readMu.Lock()
		r := n.readNext
		n.readNext = nil
		n.readMu.Unlock()
		if r == nil {
			continue
		}
		index, err := n.readIndex(ctx)
		if err != nil {
			return // stopping: the round's callers see n.stopped or their ctx
		}
		r.index = index
		n.readRounds.Add(1)
		close(r.done)
	}
}

// readIndex asks raft for the leader's commit index until it answers,
// with a fresh request context on every attempt (RAFT-NOTES rule 16): a
// request sent while there is no leader, or lost, is never answered.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	const retry = 300 * time.Millisecond
	for {
		id := n.ids.Next()
		ch := n.reads.Register(id)
		rctx := binary.BigEndian.AppendUint64(nil, id)
		if err := n.raft.ReadIndex(ctx, rctx); err != nil && !errors.Is(err, raft.ErrProposalDropped) {
			n.reads.Trigger(id, nil)
			return 0, err // raft stopped or ctx ended
		}
		timer := time.NewTimer(retry)
		select {
		case v := <-ch:
			timer.Stop()
			if index, ok := v.(uint64); ok {
				return index, nil
			}
		case <-timer.C:
			n.reads.Trigger(id, nil) // no answer (no leader?): ask again
		case <-ctx.Done():
			timer.Stop()
			n.reads.Trigger(id, nil)
			return 0, ctx.Err()
		}
	}
}

func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	select {
	case <-n.applyWait.Wait(index):
		return nil
	case <-ctx.Done():
		return n.readErr(ctx.Err())
	case <-n.stopped:
		return ErrStopped
	}
}

func (n *Node) readErr(err error) error {
	if errors.Is(err, raft.ErrStopped) {
		return ErrStopped
	}
	return fmt.Errorf("%w: %w", ErrReadTimeout, err)
}
