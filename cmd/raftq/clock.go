package main

import (
	"fmt"
	"os"
	"time"
)

// clock stamps this node's proposals. A stamp is the wall clock read at
// start plus the monotonic time elapsed since, so a step of the wall clock
// while the node runs (an NTP correction) does not move the stamps; a new
// reading is taken only at the next start, which the state machine tells
// apart by the epoch.
type clock struct {
	start time.Time // for the monotonic time since
	// epoch names this run of the process: its start, Unix ms, on the
	// (possibly offset) wall clock.
	epoch int64
}

// testClockOffsetEnv shifts this node's clock, for tests of a node whose
// clock is wrong. Not a flag: no operator should set it.
const testClockOffsetEnv = "RAFTQ_TEST_CLOCK_OFFSET"

func newClock() (clock, error) {
	start := time.Now()
	wall := start
	if s := os.Getenv(testClockOffsetEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return clock{}, fmt.Errorf("%s: %w", testClockOffsetEnv, err)
		}
		wall = start.Add(d) // Add shifts the monotonic reading too: only epoch takes it
	}
	return clock{start: start, epoch: wall.UnixMilli()}, nil
}

// now is this node's time, Unix ms: the wall clock at start plus the
// monotonic time since.
func (c clock) now() int64 { return c.epoch + time.Since(c.start).Milliseconds() }
