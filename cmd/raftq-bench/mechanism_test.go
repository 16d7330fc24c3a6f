package main

import (
	"slices"
	"testing"
	"time"
)

// The mechanism of a phase from two samples of the nodes' counters: a
// follower's group merged by the leader is counted once, as no entry of
// its own; GC time per message per node; a node that stopped answering
// counts nothing rather than a wrapped-around difference.
func TestMechanism(t *testing.T) {
	at := time.Now()
	a := sample{at: at, counters: []map[string]uint64{
		{"groups": 10, "grouped_commands": 100, "gc_cpu_us": 1000},
		{"groups": 5, "grouped_commands": 50, "gc_cpu_us": 500},
		{"groups": 0, "gc_cpu_us": 700},
	}}
	b := sample{at: at.Add(time.Second), counters: []map[string]uint64{
		// the leader: 4 entries carrying 30 commands, 20 of them from 2
		// groups merged from the follower
		{"groups": 14, "grouped_commands": 130, "merged_forwards": 2, "merged_commands": 20, "gc_cpu_us": 1200, "synced_readys": 3},
		// the follower: the 2 groups of 20 commands it forwarded
		{"groups": 7, "grouped_commands": 70, "gc_cpu_us": 600, "synced_readys": 3},
		nil, // did not answer
	}}
	m := mechanism(a, b, 30)
	if m.CommandsPerEntry != 7.5 { // the leader's 4 entries hold all 30
		t.Errorf("commands per entry %v, want 7.5 (30 commands in the leader's 4 entries)", m.CommandsPerEntry)
	}
	if want := []float64{200.0 / 30, 100.0 / 30, 0}; !slices.Equal(m.GCMicrosPerMsg, want) {
		t.Errorf("GC µs per message %v, want %v", m.GCMicrosPerMsg, want)
	}
	if m.FsyncsPerSec != 6 {
		t.Errorf("fsyncs/s %v, want 6", m.FsyncsPerSec)
	}
}
