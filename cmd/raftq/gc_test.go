package main

import "testing"

// GOGC is 100 on a small heap and leaves about gcHeadroom above a large
// one, never under gcMinPercent.
func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100}, {30 * mib, 100}, {96 * mib, 100}, {192 * mib, 50}, {400 * mib, 24}, {4096 * mib, gcMinPercent},
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live/mib, got, c.want)
		}
	}
}
