package client

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Handler processes one leased message. Returning nil acks it; an error
// releases it, to be delivered again after a backoff. The context ends
// if the lease is lost (it could not be extended in time), not when
// Consume is asked to stop: a running handler finishes.
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
// returns nil. It returns an error at once, after the running handlers
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
			for _, l := range ls { // leased as the stop came: give them back
				c.Release(context.WithoutCancel(ctx), &l, 0)
			}
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
		for i := range ls {
			wg.Add(1)
			go func(l Lease) {
				defer wg.Done()
				defer func() { <-slots }()
				c.handle(context.WithoutCancel(ctx), &l, h, o)
			}(ls[i])
		}
	}
}

// handle runs h on l, extending the lease while it runs, then acks or
// releases l.
func (c *Client) handle(ctx context.Context, l *Lease, h Handler, o ConsumeOptions) {
	hctx, lost := context.WithCancel(ctx)
	defer lost()
	done := make(chan struct{})
	var extender sync.WaitGroup
	extender.Go(func() {
		t := time.NewTicker(o.TTL / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ectx, cancel := context.WithTimeout(ctx, o.TTL/3)
				_, err := c.Extend(ectx, l, o.TTL)
				cancel()
				if errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrNotFound) {
					o.OnError(err)
					lost() // another consumer may have it now
					return
				}
				if err != nil {
					o.OnError(err)
				}
			}
		}
	})
	err := h(hctx, l)
	close(done)
	extender.Wait()
	if hctx.Err() != nil {
		return // the lease was lost: the message will come again
	}
	sctx, cancel := context.WithTimeout(ctx, o.TTL)
	defer cancel()
	if err == nil {
		err = c.Ack(sctx, l)
	} else {
		err = c.Release(sctx, l, o.RetryDelay(max(l.Deliveries, 1)))
	}
	if err != nil {
		o.OnError(err)
	}
}
