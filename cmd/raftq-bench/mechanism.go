package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Mechanism is what the nodes did for a phase, from their counters
// (GET /debug/counters) and, for a local cluster, /proc: a change to the
// proposal path counts only if it moves these too.
type Mechanism struct {
	// CommandsPerEntry: commands per entry the nodes proposed.
	CommandsPerEntry float64 `json:"commands_per_entry"`
	// EntriesPerReady: entries saved per Ready, over all nodes.
	EntriesPerReady float64 `json:"entries_per_ready"`
	// MessagesPerMsg: raft messages all nodes sent per message moved.
	MessagesPerMsg float64 `json:"raft_messages_per_message"`
	// FsyncsPerSec: Readys all nodes had to fsync, per second.
	FsyncsPerSec float64 `json:"fsyncs_per_sec"`
	// CPUMicrosPerMsg: CPU time (user and system) of each node's process
	// per message moved; nil for targets not started here.
	CPUMicrosPerMsg []float64 `json:"cpu_us_per_message,omitempty"`
	// GCMicrosPerMsg: each node's garbage collector CPU time (the Go
	// runtime's estimate) per message moved.
	GCMicrosPerMsg []float64 `json:"gc_us_per_message,omitempty"`
}

func (m *Mechanism) String() string {
	if m == nil {
		return ""
	}
	return fmt.Sprintf("%.1f\t%.1f\t%.1f\t%.0f\t%s\t%s", m.CommandsPerEntry, m.EntriesPerReady, m.MessagesPerMsg, m.FsyncsPerSec,
		joinMicros(m.CPUMicrosPerMsg), joinMicros(m.GCMicrosPerMsg))
}

func joinMicros(vs []float64) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = fmt.Sprintf("%.0f", v)
	}
	return strings.Join(out, " ")
}

// sampler reads the nodes' counters and their processes' CPU time.
type sampler struct {
	targets []string
	pids    func() []int // nil: no local processes
}

type sample struct {
	at       time.Time
	counters []map[string]uint64
	cpu      []time.Duration
}

func (s *sampler) take() sample {
	out := sample{at: time.Now()}
	for _, t := range s.targets {
		var c map[string]uint64
		if status, b, err := get(t + "/debug/counters"); err == nil && status == 200 {
			json.Unmarshal(b, &c) // a node not answering counts nothing
		}
		out.counters = append(out.counters, c)
	}
	if s.pids != nil {
		for _, pid := range s.pids() {
			out.cpu = append(out.cpu, cpuTime(pid))
		}
	}
	return out
}

// mechanism is what happened between a and b, for moved messages.
func mechanism(a, b sample, moved int) *Mechanism {
	if moved == 0 {
		return nil
	}
	sum := func(s sample, key string) float64 {
		t := 0.0
		for _, c := range s.counters {
			t += float64(c[key])
		}
		return t
	}
	delta := func(key string) float64 { return sum(b, key) - sum(a, key) }
	ratio := func(x, y float64) float64 {
		if y == 0 {
			return 0
		}
		return x / y
	}
	m := &Mechanism{
		// A follower's group that the leader merged into its own is
		// counted by both and became no entry of its own.
		CommandsPerEntry: ratio(delta("grouped_commands")-delta("merged_commands"), delta("groups")-delta("merged_forwards")),
		EntriesPerReady:  ratio(delta("saved_entries"), delta("readys")),
		MessagesPerMsg:   delta("messages_sent") / float64(moved),
		FsyncsPerSec:     delta("synced_readys") / b.at.Sub(a.at).Seconds(),
	}
	for i := range min(len(a.counters), len(b.counters)) {
		gc := 0.0 // a node that did not answer counts nothing
		if x, y := a.counters[i]["gc_cpu_us"], b.counters[i]["gc_cpu_us"]; y >= x {
			gc = float64(y-x) / float64(moved)
		}
		m.GCMicrosPerMsg = append(m.GCMicrosPerMsg, gc)
	}
	for i := range min(len(a.cpu), len(b.cpu)) {
		m.CPUMicrosPerMsg = append(m.CPUMicrosPerMsg, float64((b.cpu[i]-a.cpu[i]).Microseconds())/float64(moved))
	}
	return m
}

// cpuTime is a process's user plus system CPU time, from /proc (in clock
// ticks of 10 ms, Linux's USER_HZ).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
