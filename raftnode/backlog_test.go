package raftnode_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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

// startGated starts a single node over a gatedSM, with cfg changed by
// set, and waits until it leads. Cleanup lets every Apply through and
// stops it.
func startGated(t *testing.T, set func(*raftnode.Config)) (*raftnode.Node, *gatedSM, func()) {
	t.Helper()
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
	cfg := raftnode.Config{ID: 1, Peers: urls, SnapshotCount: 100000,
		TickInterval: 10 * time.Millisecond, ElectionTicks: 10, Logger: testLogger}
	set(&cfg)
	node, err := raftnode.New(cfg, store, sm)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: node.PeerHandler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(sm.release) }) }
	t.Cleanup(func() {
		releaseAll()
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
	return node, sm, releaseAll
}

// A node whose applying lags more than MaxApplyBacklog entries behind its
// commit index refuses new proposals at once, with ErrTooManyRequests, and
// takes them again once it has caught up.
func TestProposeRefusedWhileApplyLags(t *testing.T) {
	// Entries of one command each: grouped, eleven proposals are too few
	// entries to build a backlog.
	node, sm, releaseAll := startGated(t, func(c *raftnode.Config) { c.MaxApplyBacklog = 2; c.NoGroupCommit = true })
	deadline := time.Now().Add(30 * time.Second)

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
	// A control proposal is not refused: it waits its turn.
	control := proposeControl(node)
	select {
	case err := <-control:
		t.Fatalf("a control proposal during the backlog returned before it could be applied: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	releaseAll()
	if err := <-control; err != nil {
		t.Fatalf("a control proposal during the backlog: %v", err)
	}
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

// A leader holding MaxUncommittedBytes of entries not yet committed (its
// Ready loop is held in Apply, so nothing new is persisted or committed)
// has raft drop new proposals: Propose refuses them with
// ErrTooManyRequests at once instead of retrying until its deadline.
func TestProposeRefusedAtUncommittedLimit(t *testing.T) {
	// Entries of one command each, so that each probe fills raft's log.
	node, sm, releaseAll := startGated(t, func(c *raftnode.Config) { c.MaxUncommittedBytes = 8 << 10; c.NoGroupCommit = true })
	results := make(chan error, 100)
	go func() {
		pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer pcancel()
		_, err := node.Propose(pctx, []byte("held"))
		results <- err
	}()
	<-sm.entered
	deadline := time.Now().Add(60 * time.Second)
	// Fill with ever smaller entries until even a 9-byte one is refused:
	// less room is left than the control command below takes.
	for _, size := range []int{2 << 10, 128, 1} {
		body := []byte(strings.Repeat("x", size))
		for {
			if time.Now().After(deadline) {
				t.Fatal("a leader past its uncommitted limit never refused a proposal")
			}
			pctx, pcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			start := time.Now()
			_, err := node.Propose(pctx, body)
			pcancel()
			if errors.Is(err, raftnode.ErrTooManyRequests) {
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("the refusal took %v", took)
				}
				break
			}
			if !errors.Is(err, raftnode.ErrTimeout) {
				t.Fatalf("propose while applying is held: %v; want ErrTimeout until ErrTooManyRequests", err)
			}
		}
	}
	// A control proposal is not refused: it waits until raft has room.
	control := proposeControl(node)
	select {
	case err := <-control:
		t.Fatalf("a control proposal at the uncommitted limit returned before anything was committed: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	releaseAll()
	if err := <-control; err != nil {
		t.Fatalf("a control proposal at the uncommitted limit: %v", err)
	}
	if err := <-results; err != nil {
		t.Fatalf("the held proposal: %v", err)
	}
}

// proposeControl proposes a control command and reports its result.
func proposeControl(node *raftnode.Node) <-chan error {
	done := make(chan error, 1)
	go func() {
		pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer pcancel()
		_, err := node.ProposeControl(pctx, []byte("control"))
		done <- err
	}()
	return done
}

// Grouped (the default), proposals past the leader's uncommitted limit
// are refused with ErrTooManyRequests for every command of the refused
// group, not left to time out.
func TestGroupRefusedAtUncommittedLimit(t *testing.T) {
	node, sm, releaseAll := startGated(t, func(c *raftnode.Config) { c.MaxUncommittedBytes = 8 << 10 })
	go func() {
		pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer pcancel()
		node.Propose(pctx, []byte("held"))
	}()
	<-sm.entered
	body := []byte(strings.Repeat("x", 2<<10))
	results := make(chan error, 40)
	for range 40 {
		go func() {
			pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer pcancel()
			_, err := node.Propose(pctx, body)
			results <- err
		}()
	}
	refused := 0
	deadline := time.After(60 * time.Second)
	for refused == 0 {
		select {
		case err := <-results:
			switch {
			case errors.Is(err, raftnode.ErrTooManyRequests):
				refused++
			case err == nil:
				t.Fatal("a proposal was applied while applying is held")
			}
		case <-deadline:
			t.Fatal("no grouped proposal was refused at the uncommitted limit")
		}
	}
	releaseAll()
}
