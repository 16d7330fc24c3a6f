package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
)

// readRound is one ReadIndex round, shared by every ReadBarrier that
// joined it before it was sent (as etcd's linearizable read loop): a
// burst of reads costs the leader one heartbeat round, not one each.
type readRound struct {
	done  chan struct{} // closed once index is set
	index uint64        // the leader's commit index when it answered
}

// readRounds is the round callers join and the one being asked. Rule:
// a caller joins only a round not yet sent, so any answer to it is at
// least as fresh as the call.
type readRounds struct {
	mu   sync.Mutex
	next *readRound    // the round callers join; nil when none is wanted
	kick chan struct{} // cap 1: wakes the read loop
	// asking holds the request contexts of the attempts of the round
	// being asked, all sent after its last caller joined: the first
	// answer to any of them answers the round.
	asking   map[uint64]bool
	got      chan uint64 // cap 1
	answered atomic.Uint64
	stopped  chan struct{} // closed when the read loop ends
}

func newReadRounds() *readRounds {
	return &readRounds{kick: make(chan struct{}, 1), asking: map[uint64]bool{}, got: make(chan uint64, 1), stopped: make(chan struct{})}
}

// join returns the round not yet sent, making it (and waking the read
// loop) if there is none.
func (r *readRounds) join() *readRound {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == nil {
		r.next = &readRound{done: make(chan struct{})}
		select {
		case r.kick <- struct{}{}:
		default: // already woken
		}
	}
	return r.next
}

// take returns the round to send now, nil when none is wanted; callers
// from now on join a new one.
func (r *readRounds) take() *readRound {
	r.mu.Lock()
	defer r.mu.Unlock()
	rd := r.next
	r.next = nil
	return rd
}

// ask records an attempt's request context for the round being asked.
// Attempts that are never answered (sent while there was no leader)
// are forgotten 64 at a time.
func (r *readRounds) ask(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.asking) >= 64 {
		clear(r.asking)
	}
	r.asking[id] = true
}

// answer is raft's answer to the attempt id (from the Ready loop).
func (r *readRounds) answer(id, index uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.asking[id] {
		clear(r.asking) // the round is answered: later answers are not for it
		select {
		case r.got <- index:
		default:
		}
	}
}

// ReadBarrier returns once this node has applied everything the leader had
// committed when it was called, so a read of the state machine after it is
// linearizable. It joins the next ReadIndex round not yet sent.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if err := n.waitStarted(ctx); err != nil {
		return err
	}
	rd := n.reads.join()
	select {
	case <-rd.done:
		return n.waitApplied(ctx, rd.index)
	case <-ctx.Done():
		return n.readErr(ctx.Err())
	case <-n.reads.stopped:
		return ErrStopped
	}
}

// readLoop asks one round at a time until ctx ends.
func (n *Node) readLoop(ctx context.Context) {
	defer close(n.reads.stopped)
	for {
		select {
		case <-n.reads.kick:
		case <-ctx.Done():
			return
		}
		rd := n.reads.take()
		if rd == nil {
			continue
		}
		index, err := n.readIndex(ctx)
		if err != nil {
			return // stopping: the round's callers see reads.stopped
		}
		rd.index = index
		n.reads.answered.Add(1)
		close(rd.done)
	}
}

// readIndex asks raft for the leader's commit index until it answers,
// with a fresh request context on every attempt (RAFT-NOTES rule 16): an
// attempt sent while there is no leader is never answered, so another is
// sent every 300 ms; an answer to any attempt of the round will do, so a
// leader slower than that to answer is not asked for ever.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	const retry = 300 * time.Millisecond
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case index := <-n.reads.got:
			return index, nil
		case <-t.C:
			id := n.ids.Next()
			n.reads.ask(id)
			rctx := binary.BigEndian.AppendUint64(nil, id)
			if err := n.raft.ReadIndex(ctx, rctx); err != nil && !errors.Is(err, raft.ErrProposalDropped) {
				return 0, err // raft stopped or ctx ended
			}
			t.Reset(retry)
		case <-ctx.Done():
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
