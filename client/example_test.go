package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftq/raftq/client"
)

// endpoints are the raftq nodes the examples use: a real single node
// this package's TestMain starts (see main_test.go).
var endpoints = []string{"http://127.0.0.1:12380"}

func Example() {
	c, err := client.New(endpoints)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	id, err := c.Enqueue(ctx, "example", []byte("resize img-42.png"))
	if err != nil {
		panic(err)
	}
	l, err := c.Lease(ctx, "example", client.LeaseOptions{TTL: 30 * time.Second})
	if err != nil {
		panic(err)
	}
	fmt.Println(l.ID == id, string(l.Body), l.Deliveries)
	if err := c.Ack(ctx, l); err != nil {
		panic(err)
	}
	// Output: true resize img-42.png 1
}

// Consume with an idempotent handler: a message delivered twice (its ack
// lost, or its handler outliving a lost lease) has its effect once,
// because the handler records each message id with the effect and skips
// ids it has seen.
func ExampleClient_Consume() {
	c, _ := client.New(endpoints)
	ctx, stop := context.WithCancel(context.Background())
	for _, order := range []string{"order-1", "order-2", "order-3"} {
		c.Enqueue(ctx, "orders", []byte(order))
	}
	var mu sync.Mutex
	seen := map[uint64]bool{} // in real use: a table written in the same transaction as the effect
	var shipped []string
	err := c.Consume(ctx, "orders", func(ctx context.Context, l *client.Lease) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[l.ID] {
			return nil // done before: ack again, do nothing
		}
		seen[l.ID] = true
		shipped = append(shipped, string(l.Body))
		if len(shipped) == 3 {
			stop() // running handlers finish; Consume returns
		}
		return nil
	}, client.ConsumeOptions{Concurrency: 1, Wait: time.Second})
	fmt.Println(err, shipped)
	// Output: <nil> [order-1 order-2 order-3]
}

// Errors say what raftq refused; branch with errors.Is.
func ExampleErrQueueFull() {
	c, _ := client.New(endpoints)
	ctx := context.Background()
	c.Configure(ctx, "small", client.ConfigChange{MaxMessages: client.Ptr[int64](1)})
	c.Enqueue(ctx, "small", []byte("first"))
	_, err := c.Enqueue(ctx, "small", []byte("second"))
	var e *client.Error
	fmt.Println(errors.Is(err, client.ErrQueueFull), errors.As(err, &e) && e.Limit == "max_messages")
	// Output: true true
}

// Message groups: a group's messages go out in order, one lease at a
// time; other groups go on meanwhile.
func ExampleWithGroup() {
	c, _ := client.New(endpoints)
	ctx := context.Background()
	c.Enqueue(ctx, "carts", []byte("add apple"), client.WithGroup("cart-7"))
	c.Enqueue(ctx, "carts", []byte("add pear"), client.WithGroup("cart-7"))
	c.Enqueue(ctx, "carts", []byte("checkout"), client.WithGroup("cart-9"))
	first, _ := c.Lease(ctx, "carts", client.LeaseOptions{})
	second, _ := c.Lease(ctx, "carts", client.LeaseOptions{}) // not "add pear": cart-7 is held
	third, _ := c.Lease(ctx, "carts", client.LeaseOptions{})
	fmt.Println(string(first.Body), "|", string(second.Body), "|", third == nil)
	c.Ack(ctx, first)
	next, _ := c.Lease(ctx, "carts", client.LeaseOptions{})
	fmt.Println(string(next.Body))
	// Output:
	// add apple | checkout | true
	// add pear
}

// Consume handles a group's messages one after another, in order, even
// with several handlers at once; a handler that panics releases its
// message, which comes again.
func TestConsumeGroupsAndPanics(t *testing.T) {
	c, _ := client.New(endpoints)
	ctx, stop := context.WithCancel(context.Background())
	for i := range 6 {
		c.Enqueue(ctx, "grouped", []byte(fmt.Sprint(i)), client.WithGroup("g"))
	}
	c.Enqueue(ctx, "grouped", []byte("boom"))
	var mu sync.Mutex
	var order []string
	running, overlap, panicked := 0, false, false
	err := c.Consume(ctx, "grouped", func(ctx context.Context, l *client.Lease) error {
		mu.Lock()
		if string(l.Body) == "boom" && !panicked {
			panicked = true
			mu.Unlock()
			panic("boom")
		}
		if l.Group == "g" {
			running++
			overlap = overlap || running > 1
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if l.Group == "g" {
			running--
		}
		order = append(order, string(l.Body))
		if len(order) == 7 {
			stop()
		}
		return nil
	}, client.ConsumeOptions{Concurrency: 4, Wait: time.Second, RetryDelay: func(uint64) time.Duration { return 0 }})
	var g []string
	for _, b := range order {
		if b != "boom" {
			g = append(g, b)
		}
	}
	if err != nil || overlap || fmt.Sprint(g) != "[0 1 2 3 4 5]" || len(order) != 7 {
		t.Fatalf("err %v, overlap %v, order %v", err, overlap, order)
	}
}
