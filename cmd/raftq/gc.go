package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Unless GOGC is set, raftq bounds the garbage collector's headroom in
// bytes rather than as a share of the live heap. Go's default (GOGC=100)
// lets the heap grow to twice what is live before collecting: cheap for a
// small heap, but a node's heap is mostly queued messages, which live
// long, and doubling a million of them wastes the memory a deep queue
// needs. So GOGC stays 100 while the live heap is under gcHeadroom, then
// falls as the heap grows, so that it grows about gcHeadroom past what is
// live, down to gcMinPercent.
const (
	gcHeadroom   = 96 << 20
	gcMinPercent = 20
	gcMaxPercent = 100
	gcTuneEvery  = time.Second
)

// gcPercentFor is the GOGC for a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live <= gcHeadroom {
		return gcMaxPercent
	}
	return max(int(gcHeadroom*100/live), gcMinPercent)
}

// tuneGC sets GOGC from the live heap at every tick until ctx ends.
func tuneGC(ctx context.Context) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := gcMaxPercent
	debug.SetGCPercent(current)
	every(ctx, gcTuneEvery, func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not measured by this Go runtime
		}
		// Small changes are not worth a call.
		if p := gcPercentFor(sample[0].Value.Uint64()); p*10 < current*9 || p*10 > current*11 {
			debug.SetGCPercent(p)
			current = p
		}
	})
}
