package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/queuefsm"
	"github.com/raftq/raftq/raftnode"
)

// A removal whose leadership transfer ran out of time proposed nothing: a
// 503 the client may retry, not a 400.
func TestMemberErrTransferTimeout(t *testing.T) {
	err := memberErr(fmt.Errorf("raftnode: moving leadership off the member being removed: %w",
		fmt.Errorf("%w: node 1 leads", raftnode.ErrTransferTimeout)))
	if !errors.Is(err, httpapi.ErrUnavailable) || !errors.Is(err, httpapi.ErrNotApplied) || errors.Is(err, httpapi.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

// The state machine's refusals by a limit become the API's, keeping what
// they name: a queue's limit is ErrQueueFull (429), the cluster's and a
// disk alarm ErrStorageFull (507), an unknown queue ErrNotFound.
func TestAPIErrLimits(t *testing.T) {
	queueFull := &queuefsm.LimitError{Limit: "max_messages", Queue: "q", Value: 10, Usage: 10, Request: 1}
	clusterFull := &queuefsm.LimitError{Limit: "max_queues", Value: 3, Usage: 3, Request: 1}
	for _, c := range []struct {
		in   error
		is   error
		want httpapi.LimitError
	}{
		{queueFull, httpapi.ErrQueueFull, httpapi.LimitError{Err: httpapi.ErrQueueFull, Limit: "max_messages", Queue: "q", Value: 10, Usage: 10, Request: 1}},
		{fmt.Errorf("wrapped: %w", clusterFull), httpapi.ErrStorageFull, httpapi.LimitError{Err: httpapi.ErrStorageFull, Limit: "max_queues", Value: 3, Usage: 3, Request: 1}},
	} {
		err := apiErr(c.in)
		var le *httpapi.LimitError
		if !errors.As(err, &le) || *le != c.want || !errors.Is(err, c.is) {
			t.Fatalf("%v: got %#v", c.in, err)
		}
	}
	var ae *httpapi.AlarmError
	if err := apiErr(&queuefsm.NoSpaceError{Nodes: []uint64{2, 3}}); !errors.As(err, &ae) || fmt.Sprint(ae.Nodes) != "[2 3]" || !errors.Is(err, httpapi.ErrStorageFull) {
		t.Fatalf("alarm: %#v", err)
	}
	if err := apiErr(fmt.Errorf("%w: q", queuefsm.ErrNoQueue)); !errors.Is(err, httpapi.ErrNotFound) {
		t.Fatalf("no queue: %v", err)
	}
}

// Backpressure (a proposal refused before raft saw it) is a 429 the
// client may retry: not applied.
func TestUnavailableBackpressure(t *testing.T) {
	err := unavailable(fmt.Errorf("%w: 6000 committed entries not yet applied", raftnode.ErrTooManyRequests))
	if !errors.Is(err, httpapi.ErrOverloaded) || !errors.Is(err, httpapi.ErrNotApplied) || errors.Is(err, httpapi.ErrUnavailable) {
		t.Fatalf("got %v", err)
	}
}
