package main

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/raftq/raftq/queuefsm"
	"github.com/raftq/raftq/raftnode"
)

// DefaultMinFreeBytes is --min-free-bytes: below it, a node raises its
// disk space alarm. What a node still writes once the alarm is raised
// (dequeues, acks and purges are log entries too) must fit in what is
// left: the alarm's own entry and those on their way as it commits, the
// WAL's next 64 MiB segment (preallocated whole when the current one
// fills) and the next snapshot's state file, about as large as the state,
// each written before an old one is removed (the store keeps 5 of each; a
// young data dir that keeps fewer grows by one of each per snapshot).
// 256 MiB is a segment and a state of up to about 190 MiB; a cluster that
// keeps more (the default cluster budget is 512 MiB) should set 64 MiB
// plus the state it keeps, or a node may run out of space at its next
// snapshot and stop (fail-stop: nothing acknowledged is lost, but the
// node is down until space is added).
const DefaultMinFreeBytes = 256 << 20

// clearNumerator / clearDenominator: an alarm raised below the threshold
// clears only once free space is back to 1.25 times it, so a node whose
// free space hovers around the threshold does not raise and clear an
// alarm (two log entries, and enqueues refused and taken in turn) at every
// check.
const clearNumerator, clearDenominator = 5, 4

// alarmEvery is how often a node looks at its data dir's free space.
const alarmEvery = time.Second

// diskAlarm keeps this node's replicated disk space alarm (queuefsm.OpAlarm)
// in step with the free space of its data dir, as etcd's NOSPACE alarm: it
// is raised when free space falls below min, cleared when it is back to
// min × 1.25. While any node's alarm is raised, the state machine refuses
// enqueues and batches (queuefsm.ErrNoSpace) and takes everything that
// frees space. The alarm goes through the log, so it holds on every node,
// and a raised one survives restarts.
type diskAlarm struct {
	id   uint64
	dir  string
	min  uint64 // raise below; 0: never raise (clear one raised before)
	free func(dir string) (uint64, error)
	// raised reports whether this node's alarm is raised in the state
	// machine as this node has applied it.
	raised func() bool
	// orphans lists, on the leader only, the raised alarms of nodes that
	// are no longer members: no one else would ever clear them.
	orphans func() []uint64
	// propose replicates an alarm command and returns once it is applied
	// here, or fails (then the next check tries again).
	propose func(ctx context.Context, c queuefsm.Command) error
	timeout time.Duration // for each proposal
	lg      *zap.Logger

	failing bool // the last check failed and said so; the next failure is quiet
}

// newDiskAlarm watches c's data dir for svc's node.
func newDiskAlarm(c config, svc *service, lg *zap.Logger) *diskAlarm {
	id := svc.node.ID()
	return &diskAlarm{
		id: id, dir: c.dataDir, min: c.minFreeBytes, free: freeBytes, timeout: c.requestTimeout, lg: lg,
		raised: func() (r bool) {
			svc.node.View(func() { r = slices.Contains(svc.fsm.Alarms(), id) })
			return r
		},
		orphans: func() []uint64 { return orphanAlarms(svc) },
		propose: func(ctx context.Context, cmd queuefsm.Command) error {
			_, err := svc.proposeControl(ctx, cmd)
			return err
		},
	}
}

// orphanAlarms lists, when svc's node leads, the raised alarms of nodes
// that are not members. The alarms are read before the members: a member
// removed in between is rightly counted out, and one added in between,
// whose alarm could not be seen yet, is among the members.
func orphanAlarms(svc *service) []uint64 {
	if svc.node.Status().Leader != svc.node.ID() {
		return nil
	}
	var alarms []uint64
	svc.node.View(func() { alarms = svc.fsm.Alarms() })
	if len(alarms) == 0 {
		return nil
	}
	members := svc.node.Status().Members
	var out []uint64
	for _, id := range alarms {
		if len(members) > 0 && !slices.ContainsFunc(members, func(m raftnode.Member) bool { return m.ID == id }) {
			out = append(out, id)
		}
	}
	return out
}

// freeBytes is the space the data dir's filesystem has left for an
// unprivileged writer (the root reserve does not count).
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// wantRaised decides whether the alarm should be raised, with free bytes
// free, given whether it is raised now: raised below min, cleared at
// min × 1.25 or more, and left as it is in between (hysteresis).
func wantRaised(free, min uint64, raised bool) bool {
	switch {
	case min == 0:
		return false
	case free < min:
		return true
	case free/clearNumerator >= min/clearDenominator: // free ≥ 1.25 × min, without overflow
		return false
	default:
		return raised
	}
}

// run checks every interval until ctx ends.
func (a *diskAlarm) run(ctx context.Context, interval time.Duration) {
	every(ctx, interval, func() {
		a.check(ctx)
		a.clearOrphans(ctx)
	})
}

// clearOrphans clears the alarms of nodes removed from the cluster (ids
// are never reused, so such an alarm would refuse enqueues for ever).
func (a *diskAlarm) clearOrphans(ctx context.Context) {
	for _, id := range a.orphans() {
		pctx, cancel := context.WithTimeout(ctx, a.timeout)
		err := a.propose(pctx, queuefsm.Command{Op: queuefsm.OpAlarm, Node: id, Raise: false})
		cancel()
		if err != nil {
			return // the next round tries again
		}
		a.lg.Info("cleared the disk space alarm of a node that is no longer a member", zap.Uint64("node", id))
	}
}

// check raises or clears the alarm once if free space says so.
func (a *diskAlarm) check(ctx context.Context) {
	free, err := a.free(a.dir)
	if err != nil {
		a.fail("cannot read the data dir's free space", err)
		return
	}
	raised := a.raised()
	want := wantRaised(free, a.min, raised)
	if want == raised {
		a.failing = false
		return
	}
	pctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if err := a.propose(pctx, queuefsm.Command{Op: queuefsm.OpAlarm, Node: a.id, Raise: want}); err != nil {
		if ctx.Err() == nil {
			a.fail(fmt.Sprintf("cannot %s this node's disk space alarm; trying again", verb(want)), err)
		}
		return
	}
	a.failing = false
	if want {
		a.lg.Warn("free space in the data dir is low: disk space alarm raised; enqueues are refused on every node until it clears",
			zap.String("data-dir", a.dir), zap.Uint64("free-bytes", free), zap.Uint64("min-free-bytes", a.min))
	} else {
		a.lg.Info("free space in the data dir is back: disk space alarm cleared",
			zap.String("data-dir", a.dir), zap.Uint64("free-bytes", free), zap.Uint64("clear-at-bytes", a.min/clearDenominator*clearNumerator))
	}
}

func verb(raise bool) string {
	if raise {
		return "raise"
	}
	return "clear"
}

// fail logs the first of a run of failures.
func (a *diskAlarm) fail(msg string, err error) {
	if !a.failing {
		a.lg.Warn(msg, zap.String("data-dir", a.dir), zap.Error(err))
	}
	a.failing = true
}
