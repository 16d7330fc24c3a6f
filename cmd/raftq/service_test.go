package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/raftq/raftq/httpapi"
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
