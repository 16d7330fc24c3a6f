package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Handler processes one leased message. Returning nil acks it; an error
// (or a panic) releases it, to be delivered again after a backoff. The
// context ends if the lease is lost (refused, or not extended before it
// expires), not when Consume is asked to stop: a running handler
// finishes. l.Expires is the lease's first expiry; Consume extends it.
//
// Delivery is at least once: a message whose ack was lost, or whose
// handler outlived a lost lease, comes again. Make the handler
// idempotent, for instance by recording each message's ID (or a business
// key it carries) in the same transaction as its effect, and skipping ids
// already recorded.
type Handler func(ctx context.Context, l *Lease) error

// ConsumeOptions tune Consume; zero values take the defaults.
type ConsumeOptions struct {
	// Concurrency is how many handlers run at once (default 1).
	Concurrency int
	// TTL is each lease's ttl (default 30 s); a running handler's lease is
	// extended every TTL/3.
	TTL time.Duration
	// Wait is each long poll's wait (default 20 s).
	Wait time.Duration
	// RetryDelay is how long a message whose handler failed waits before
	// it is delivered again, by its delivery count (default: 1 s doubling,
	// at most 5 min).
	RetryDelay func(deliveries uint64) time.Duration
	// OnError, if set, is told of the errors Consume works around (a
	// failed lease, ack, release or extend).
	OnError func(error)
}

func (o *ConsumeOptions) withDefaults() {
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	if o.TTL <= 0 {
		o.TTL = 30 * time.Second
	}
	if o.Wait <= 0 {
		o.Wait = 20 * time.Second
	}
	if o.RetryDelay == nil {
		o.RetryDelay = func(n uint64) time.Duration { return min(time.Second<<min(n-1, 20), 5*time.Minute) }
	}
	if o.OnError == nil {
		o.OnError = func(error) {}
	}
}

// Consume leases messages of queue and runs h on each, at most
// o.Concurrency at once, until ctx ends; it then stops leasing, lets the
// running handlers finish (and acks or releases their messages), and
// returns nil. The messages of one message group are handled one after
// another, in order (a receive may lease several of a group at once); if
// one fails, the group's next ones leased with it are released. A
// message leased just as ctx ended, whose answer was cut off, stays
// invisible until its lease's ttl passes; none is lost. It returns an error at once, after the running handlers
// finish, only when raftq refuses it for good: the queue name is
// invalid, or the token is not allowed to consume.
func (c *Client) Consume(ctx context.Context, queue string, h Handler, o ConsumeOptions) error {
	o.withDefaults()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, o.Concurrency)
	for {
		select { // a free slot first
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1
		for free < o.Concurrency && len(slots) < cap(slots) {
			slots <- struct{}{}
			free++
		}
		ls, err := c.LeaseMany(ctx, queue, free, LeaseOptions{TTL: o.TTL, Wait: o.Wait})
		for range free - len(ls) {
			<-slots
		}
		switch {
		case ctx.Err() != nil:
			c.giveBack(context.WithoutCancel(ctx), ls, o) // leased as the stop came
			for range ls {
				<-slots
			}
			return nil
		case errors.Is(err, ErrInvalid), errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden):
			return err
		case err != nil:
			o.OnError(err)
			sleep(ctx, time.Second)
			continue
		}
		for _, run := range byGroup(ls) {
			wg.Go(func() {
				hctx := context.WithoutCancel(ctx)
				for i := range run {
					if !c.handle(hctx, &run[i], h, o) {
						c.giveBack(hctx, run[i+1:], o) // so that none overtakes the failed one
						for range run[i+1:] {
							<-slots
						}
						<-slots
						return
					}
					<-slots
				}
			})
		}
	}
}

// byGroup splits leases into runs handled one after another: each
// message group's leases together, in order; each ungrouped lease alone.
func byGroup(ls []Lease) [][]Lease {
	var runs [][]Lease
	at := map[string]int{}
	for _, l := range ls {
		if i, ok := at[l.Group]; ok && l.Group != "" {
			runs[i] = append(runs[i], l)
			continue
		}
		at[l.Group] = len(runs)
		runs = append(runs, []Lease{l})
	}
	return runs
}

// giveBack releases leases at once, each within the lease's ttl.
func (c *Client) giveBack(ctx context.Context, ls []Lease, o ConsumeOptions) {
	var wg sync.WaitGroup
	for i := range ls {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, o.TTL)
			defer cancel()
			if err := c.Release(rctx, &ls[i], 0); err != nil {
				o.OnError(err)
			}
		})
	}
	wg.Wait()
}

// handle runs h on l, extending the lease while it runs, then acks or
// releases l; false when h failed or the lease was lost.
func (c *Client) handle(ctx context.Context, l *Lease, h Handler, o ConsumeOptions) bool {
	hctx, lost := context.WithCancel(ctx)
	defer lost()
	done := make(chan struct{})
	var extender sync.WaitGroup
	extender.Go(func() { c.keepLeased(ctx, *l, o, done, lost) })
	err := run(hctx, l, h)
	close(done)
	extender.Wait()
	if hctx.Err() != nil {
		return false // the lease was lost: the message will come again
	}
	sctx, cancel := context.WithTimeout(ctx, o.TTL)
	defer cancel()
	failed := err != nil
	if failed {
		o.OnError(err)
		err = c.Release(sctx, l, o.RetryDelay(max(l.Deliveries, 1)))
	} else {
		err = c.Ack(sctx, l)
	}
	if err != nil {
		o.OnError(err)
	}
	return !failed && err == nil
}

// run runs h, turning a panic into an error.
func run(ctx context.Context, l *Lease, h Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("client: the handler of message %d panicked: %v", l.ID, p)
		}
	}()
	return h(ctx, l)
}

// keepLeased extends l (its own copy) every ttl/3 until done, and ends
// the handler's context by lost when the lease is refused or would
// expire before an extension got through.
func (c *Client) keepLeased(ctx context.Context, l Lease, o ConsumeOptions, done <-chan struct{}, lost func()) {
	t := time.NewTicker(o.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			ectx, cancel := context.WithTimeout(ctx, o.TTL/3)
			_, err := c.Extend(ectx, &l, o.TTL)
			cancel()
			switch {
			case errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrNotFound):
				o.OnError(err)
				lost() // another consumer may have it now
				return
			case err != nil:
				o.OnError(err)
				if time.Until(l.Expires) < o.TTL/3 { // the next try would come too late
					lost()
					return
				}
			}
		}
	}
}
