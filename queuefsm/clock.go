package queuefsm

import (
	"cmp"
	"slices"
)

// MaxProposer is the largest node id whose stamps the clock follows.
// raftnode gives members ids 1 to 65535 and never reuses one, so the clock
// keeps at most that many proposers (32 bytes each: 2 MiB at the very
// worst, a few entries in practice, one per node id ever used). A command
// naming a larger proposer is malformed.
const MaxProposer = 1<<16 - 1

// proposerClock is what the clock remembers of one proposer: the run it
// last heard from (epoch), that run's latest stamp applied, and the
// cluster time that stamp stands for. at − stamp is fixed for the whole
// run: it is set when the run is first heard from (see advance).
type proposerClock struct {
	id    uint64
	epoch int64
	stamp int64
	at    int64
}

// advance moves the clock for command c, before c is executed. Time never
// goes back.
//
// Cluster time moves by how far one run's stamps advance, never by where
// they stand: each run of each proposer maps its stamps onto cluster time
// by a fixed offset, set when the run is first heard from (its stamp there
// stands for the cluster time then), and the clock is the furthest any run
// has reached. A run's stamps come from a monotonic clock (see
// cmd/raftq/clock.go), so however far its wall clock is off, every line
// moves at the pace of real time; only a clock running at the wrong rate
// drags cluster time, in proportion.
//
// The offset is not raised when the clock is ahead of a run's line (other
// runs pushed it, or this run's entry spent a while between stamping and
// applying): raising it would add every such delay to the clock for good,
// and with two proposers whose entries interleave the clock would run
// fast by the delays of every reordering. A line left behind costs nothing
// but the moves it no longer makes.
//
// There is no cap per entry: a cap cannot bound a rate error (it is spread
// over many small steps) and an offset no longer moves anything, while
// after an idle stretch (no entries, no timers) a capped clock would lag
// and then rush to catch up at a cap per tick, expiring new leases early.
//
// Commands without a proposer (versions 1 and 2, tools) keep the first
// rule: the clock moves to their stamp, at most MaxClockStep per entry.
func (f *FSM) advance(c Command) {
	if c.Proposer == 0 {
		f.advanceTo(c.Time)
		return
	}
	i, found := slices.BinarySearchFunc(f.clocks, c.Proposer, func(p proposerClock, id uint64) int { return cmp.Compare(p.id, id) })
	if !found || f.clocks[i].epoch != c.Epoch {
		// A proposer never heard from, or a new run of it (a restart; its
		// wall clock was read anew): its stamps say nothing yet about how
		// much time has passed, so they become its baseline.
		if f.now == 0 && c.Time > 0 {
			f.now = c.Time // the very first time sets the clock
		}
		p := proposerClock{id: c.Proposer, epoch: c.Epoch, stamp: c.Time, at: f.now}
		if found {
			f.clocks[i] = p
		} else {
			f.clocks = slices.Insert(f.clocks, i, p)
		}
		return
	}
	p := &f.clocks[i]
	if c.Time <= p.stamp {
		return // reordered behind a later stamp of this run, or equal
	}
	p.at += c.Time - p.stamp
	p.stamp = c.Time
	f.now = max(f.now, p.at)
}

// advanceTo moves the clock to t, at most MaxClockStep at a time (the
// first time sets it outright): the rule for commands without a proposer.
func (f *FSM) advanceTo(t int64) {
	switch {
	case t <= f.now:
	case f.now == 0:
		f.now = t
	default:
		f.now = min(t, f.now+MaxClockStep)
	}
}
