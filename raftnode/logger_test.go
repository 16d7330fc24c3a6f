package raftnode

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A refused peer of another cluster makes rafthttp log at every redial:
// the repeats are dropped, other lines are not.
func TestThrottledCoreDropsRepeats(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	lg := zap.New(throttle(core, "cluster ID mismatch", time.Minute)).With(zap.String("k", "v"))
	for range 5 {
		lg.Warn("request sent was ignored due to cluster ID mismatch")
		lg.Warn("request cluster ID mismatch")
		lg.Info("peer became active")
	}
	if got := logs.Len(); got != 2+5 {
		t.Fatalf("%d entries written, want 2 + 5: %v", got, logs.All())
	}
}
