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
	start time.Time
	// epoch names this run of the process (its start, Unix ms).
	epoch int64
}

// testClockOffsetEnv shifts this node's clock, for tests of a node whose
// clock is wrong. Not a flag: no operator should set it.
const testClockOffsetEnv = "RAFTQ_TEST_CLOCK_OFFSET"

func newClock() (clock, error) {
	now := time.Now()
	if s := os.Getenv(testClockOffsetEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return clock{}, fmt.Errorf("%s: %w", testClockOffsetEnv, err)
		}
		now = now.Add(d)
	}
	return clock{start: now, epoch: now.UnixMilli()}, nil
}

// now is this node's time, Unix ms.
func (c clock) now() int64 { return c.start.Add(time.Since(c.start)).UnixMilli() }
