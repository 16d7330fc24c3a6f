package main

import (
	"testing"
	"time"
)

// The test offset moves the stamps, not only the epoch (time.Time.Add
// shifts the monotonic reading too, which once cancelled the offset out).
func TestClockOffset(t *testing.T) {
	t.Setenv(testClockOffsetEnv, "10m")
	c, err := newClock()
	if err != nil {
		t.Fatal(err)
	}
	ahead := time.Duration(c.now()-time.Now().UnixMilli()) * time.Millisecond
	if ahead < 9*time.Minute || ahead > 11*time.Minute {
		t.Fatalf("stamps are %v ahead of the wall clock, want 10m", ahead)
	}
	if d := c.now() - c.epoch; d < 0 || d > int64(time.Minute/time.Millisecond) {
		t.Fatalf("stamp %d vs epoch %d", c.now(), c.epoch)
	}
	t.Setenv(testClockOffsetEnv, "soon")
	if _, err := newClock(); err == nil {
		t.Fatal("a bad offset was accepted")
	}
}
