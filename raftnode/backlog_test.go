package raftnode_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/raftq/raftq/raftnode"
	"github.com/raftq/raftq/wal"
)

// gatedSM applies nothing until the test lets it: each Apply says it has
// begun on entered, then waits for a token on release (or for release to
// be closed).
type gatedSM struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gatedSM) Apply(uint64, []byte) any {
	g.entered <- struct{}{}
	<-g.release
	return nil
}

func (g *gatedSM) Capture() func(io.Writer) error { return func(io.Writer) error { return nil } }
func (g *gatedSM) RestoreFrom(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// A node whose applying lags more than MaxApplyBacklog entries behind its
// commit index refuses new proposals at once, with ErrTooManyRequests, and
// takes them again once it has caught up.
func TestProposeRefusedWhileApplyLags(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	urls := []string{"http://" + l.Addr().String()}
	store, err := wal.Open(zap.NewNop(), dir, 1, func() (uint64, error) { return raftnode.ClusterIDFor("test", urls), nil })
	if err != nil {
		t.Fatal(err)
	}
	sm := &gatedSM{entered: make(chan struct{}, 1000), release: make(chan struct{})}
	node, err := raftnode.New(raftnode.Config{ID: 1, Peers: urls, SnapshotCount: 100000,
		TickInterval: 10 * time.Millisecond, ElectionTicks: 10, MaxApplyBacklog: 2, Logger: testLogger}, store, sm)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: node.PeerHandler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	released := false
	t.Cleanup(func() {
		if !released {
			close(sm.release)
		}
		cancel()
		<-done
		srv.Close()
		store.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for node.Status().Leader != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Proposals pile up behind one whose Apply is held.
	results := make(chan error, 11)
	propose := func() {
		pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer pcancel()
		_, err := node.Propose(pctx, []byte("x"))
		results <- err
	}
	go propose()
	<-sm.entered
	for range 10 {
		go propose()
	}
	// Let applies through one at a time until the node sees its backlog;
	// a probe that is not refused only adds to it.
	gone, over := context.WithCancel(context.Background())
	over() // a probe never waits
	refused := false
	for !refused {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatal("a node lagging far behind its commit index never refused a proposal")
		}
		start := time.Now()
		_, err := node.Propose(gone, []byte("probe"))
		switch {
		case errors.Is(err, raftnode.ErrTooManyRequests):
			refused = true
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the refusal took %v", took)
			}
		default:
			select {
			case sm.release <- struct{}{}:
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	close(sm.release)
	released = true
	for range 11 {
		if err := <-results; err != nil {
			t.Fatalf("a proposal taken before the backlog: %v", err)
		}
	}
	// Caught up: proposals are taken again.
	for {
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := node.Propose(pctx, []byte("after"))
		pcancel()
		if err == nil {
			break
		}
		if !errors.Is(err, raftnode.ErrTooManyRequests) || time.Now().After(deadline.Add(60*time.Second)) {
			t.Fatalf("propose after catching up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
