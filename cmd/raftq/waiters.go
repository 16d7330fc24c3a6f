package main

import (
	"context"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/queuefsm"
)

// notifyingFSM is the queue state machine plus the long polls waiting on
// it. A waiting consumer costs nothing: it proposes nothing until a
// message is ready in its queue, and then only as many waiters are woken
// as there are ready messages not already promised to a woken one (a
// "turn"). A waiter given a turn takes through the log and then hands the
// turn back, so a turn that found nothing (another node's consumer was
// faster) or was abandoned passes to the next waiter.
//
// Apply and RestoreFrom run on the raft goroutine with the node's write
// lock held; await and Turn.Done read the state under the node's read
// lock (view, the node's View). Both then take mu: the lock order is node,
// then mu.
type notifyingFSM struct {
	*queuefsm.FSM
	// clockAt is when (on this node's monotonic clock) the state machine's
	// clock last read clockNow; see estimatedNow. Guarded by the node's
	// lock, as the state machine is.
	clockNow int64
	clockAt  time.Time

	mu      sync.Mutex
	queues  map[string]*queueWaiters // only queues with waiters or turns out
	stopped bool
	stop    chan struct{} // closed by stopWaiting
}

// queueWaiters are the long polls of one queue: waiting, oldest first, and
// the turns given and not yet handed back, with the messages promised to
// them.
type queueWaiters struct {
	waiting  []*waiter
	out      []*waiter
	promised int
}

// waiter is one long poll. ch is closed when it is given a turn, for
// given messages (at most the want it asked for), or when its queue was
// deleted (gone, and no turn). deleted is set, under mu, when its queue
// is deleted while its turn is out: the poll then answers instead of
// waiting again.
type waiter struct {
	ch      chan struct{}
	want    int
	given   int
	gone    bool
	deleted bool
}

func newNotifyingFSM() *notifyingFSM {
	return &notifyingFSM{FSM: queuefsm.New(), queues: map[string]*queueWaiters{}, stop: make(chan struct{})}
}

func (f *notifyingFSM) Apply(index uint64, cmd []byte) any {
	res := f.FSM.Apply(index, cmd)
	f.noteClock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queues) == 0 { // nobody waits: skip reading the queue name again
		return res
	}
	queue, tick := queuefsm.QueueOf(cmd)
	if tick { // leases and delays may have ended anywhere
		f.grantAll()
		return res
	}
	if _, done := res.(queuefsm.Done); done && queuefsm.OpOf(cmd) == queuefsm.OpDeleteQueue {
		f.answerGone(queue)
		return res
	}
	f.grant(queue)
	if dlq := f.DeadLetterQueue(queue); dlq != "" { // taking may dead-letter
		f.grant(dlq)
	}
	return res
}

// RestoreFrom replaces the state: any queue may have messages now, and a
// waited-on queue that existed before and does not now was deleted. (One
// deleted and made again within the snapshot's entries is not seen: its
// waiters wait on, on the queue of that name.) mu is not held while the
// state is read: the node's write lock, held, keeps waiters from joining
// or handing turns back meanwhile, and leave or stopWaiting need not wait.
func (f *notifyingFSM) RestoreFrom(r io.Reader) error {
	var existed []string
	f.mu.Lock()
	for q := range f.queues {
		if f.FSM.HasQueue(q) {
			existed = append(existed, q)
		}
	}
	f.mu.Unlock()
	err := f.FSM.RestoreFrom(r)
	f.noteClock()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, q := range existed {
		if !f.FSM.HasQueue(q) {
			f.answerGone(q)
		}
	}
	f.grantAll()
	return err
}

func (f *notifyingFSM) noteClock() {
	if now := f.FSM.Now(); now != f.clockNow || f.clockAt.IsZero() {
		f.clockNow, f.clockAt = now, time.Now()
	}
}

// estimatedNow is where the state machine's clock would stand if an entry
// were applied now: it runs at the pace of real time while entries carry
// it, and nothing moves it between entries. For the tick proposer (is
// anything due?) and for ages shown to clients. Call it under the node's
// lock.
func (f *notifyingFSM) estimatedNow() int64 {
	if f.clockAt.IsZero() {
		return f.FSM.Now()
	}
	return f.clockNow + time.Since(f.clockAt).Milliseconds()
}

// grant gives turns to waiters of queue, oldest first, while it has ready
// messages no turn was given for: a waiter that wants up to N is promised
// up to N. The caller holds mu and the node's lock.
func (f *notifyingFSM) grant(queue string) {
	qw := f.queues[queue]
	if qw == nil {
		return
	}
	if len(qw.waiting) > 0 {
		free := f.FSM.Ready(queue) - qw.promised
		for len(qw.waiting) > 0 && free > 0 {
			w := qw.waiting[0]
			w.given = min(w.want, free)
			free -= w.given
			qw.promised += w.given
			close(w.ch)
			qw.waiting = qw.waiting[1:]
			qw.out = append(qw.out, w)
		}
	}
	f.forgetIdle(queue, qw)
}

// answerGone answers every waiter of a deleted queue at once, with no
// turn, and marks the turns out, whose polls then answer instead of
// waiting again; those are handed back as usual. The caller holds mu and
// the node's lock.
func (f *notifyingFSM) answerGone(queue string) {
	qw := f.queues[queue]
	if qw == nil {
		return
	}
	for _, w := range qw.waiting {
		w.gone = true
		close(w.ch)
	}
	for _, w := range qw.out {
		w.deleted = true
	}
	qw.waiting = nil
	f.forgetIdle(queue, qw)
}

func (f *notifyingFSM) grantAll() {
	for q := range f.queues {
		f.grant(q)
	}
}

func (f *notifyingFSM) forgetIdle(queue string, qw *queueWaiters) {
	if len(qw.waiting) == 0 && qw.promised == 0 {
		delete(f.queues, queue)
	}
}

// turn is a waiter's right to take one message; done hands it back.
type turn struct {
	f     *notifyingFSM
	view  func(func())
	queue string
	w     *waiter
	once  sync.Once
}

func (t *turn) Done() { t.once.Do(func() { t.f.handBack(t.view, t.queue, t.w) }) }

// Deleted reports whether the queue was deleted while the turn was out.
func (t *turn) Deleted() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.w.deleted
}

func (f *notifyingFSM) handBack(view func(func()), queue string, w *waiter) {
	view(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if qw := f.queues[queue]; qw != nil {
			qw.promised -= w.given
			if i := slices.Index(qw.out, w); i >= 0 {
				qw.out = slices.Delete(qw.out, i, i+1)
			}
			f.grant(queue)
		}
	})
}

// await returns a turn once up to want messages may be ready in queue for
// this waiter; ctx's error when ctx ends first; httpapi.ErrStopping at
// shutdown; httpapi.ErrQueueDeleted when the queue is deleted meanwhile.
func (f *notifyingFSM) await(ctx context.Context, view func(func()), queue string, want int) (httpapi.Turn, error) {
	w := &waiter{ch: make(chan struct{}), want: max(want, 1)}
	var err error
	view(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.stopped {
			err = httpapi.ErrStopping
			return
		}
		qw := f.queues[queue]
		if qw == nil {
			qw = &queueWaiters{}
			f.queues[queue] = qw
		}
		qw.waiting = append(qw.waiting, w)
		f.grant(queue)
	})
	if err != nil {
		return nil, err
	}
	t := &turn{f: f, view: view, queue: queue, w: w}
	select {
	case <-w.ch:
		if w.gone { // written before ch was closed
			return nil, httpapi.ErrQueueDeleted
		}
		return t, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-f.stop:
		err = httpapi.ErrStopping
	}
	if f.leave(queue, w) {
		t.Done() // given a turn meanwhile: pass it on
	}
	return nil, err
}

// leave removes a waiter that stops waiting; true when it had been given a
// turn already (not when its queue was deleted: no turn to pass on).
func (f *notifyingFSM) leave(queue string, w *waiter) (granted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w.gone {
		return false
	}
	qw := f.queues[queue]
	if i := slices.Index(qw.waiting, w); i >= 0 {
		qw.waiting = slices.Delete(qw.waiting, i, i+1)
		f.forgetIdle(queue, qw)
		return false
	}
	return true
}

// stopWaiting answers every waiter, and every later one, at once.
func (f *notifyingFSM) stopWaiting() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		f.stopped = true
		close(f.stop)
	}
}
