package httpapi

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// WaiterCap bounds the long polls waiting at once on a node (per API
// that shares it).
type WaiterCap struct {
	Max int
	n   atomic.Int64
}

// LongPoll is the long poll raftq's API and its SQS endpoint share. It
// runs take once when wait is 0. Otherwise it waits, proposing nothing,
// for a turn (up to want messages may be ready for this caller; see
// Queue.AwaitReady), runs take holding it, and waits again if another
// consumer was faster, until wait passes; a last read barrier (no log
// entry) then makes sure nothing became ready unseen on a lagging node
// before it gives up. At shutdown, when the queue is deleted, or when ctx
// (the client's request) ends, it returns nil at once; past cap.Max
// waiting polls it refuses with ErrTooManyWaiters. Each take runs under
// timeout, so it takes at most wait plus two timeouts (a take begun just
// before the wait ends, then the barrier and a last take).
func LongPoll(ctx context.Context, q Queue, queue string, wait time.Duration, want int, timeout time.Duration,
	cap *WaiterCap, take func(context.Context) (found bool, err error)) error {
	if wait == 0 {
		return timed(ctx, timeout, take)
	}
	if cap.n.Add(1) > int64(cap.Max) {
		cap.n.Add(-1)
		return fmt.Errorf("%w: %d long polls wait on this node already", ErrTooManyWaiters, cap.Max)
	}
	defer cap.n.Add(-1)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for wctx.Err() == nil {
		t, err := q.AwaitReady(wctx, queue, want)
		switch {
		case errors.Is(err, ErrStopping), errors.Is(err, ErrQueueDeleted):
			return nil
		case err != nil && wctx.Err() == nil:
			return err // refused (a bad queue name, say)
		case err != nil: // the wait is over, or the client left
			continue
		}
		found, err := onTurn(ctx, timeout, t, take)
		if err != nil || found || t.Deleted() {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ready, err := q.HasReady(bctx, queue)
	if err != nil || !ready {
		return err
	}
	_, err = take(bctx)
	return err
}

// timed runs take under timeout.
func timed(ctx context.Context, timeout time.Duration, take func(context.Context) (bool, error)) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := take(tctx)
	return err
}

// onTurn runs take for a turn, handing the turn back whatever happens.
func onTurn(ctx context.Context, timeout time.Duration, t Turn, take func(context.Context) (bool, error)) (bool, error) {
	defer t.Done()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return take(tctx)
}
