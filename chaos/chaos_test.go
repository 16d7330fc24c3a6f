package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

var (
	raftqBin  string // raftq built with failpoints, once per test binary
	seedFlag  = flag.Uint64("chaos.seed", 0, "replay every scenario with this seed (0: a new seed each run)")
	keepFlag  = flag.Bool("chaos.keep", false, "keep every scenario's directory, not only failed ones")
	chaosTime = flag.Duration("chaos.duration", 25*time.Second, "traffic time per scenario")
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "raftq-chaos-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !testing.Short() {
		root, _ := filepath.Abs("..")
		if raftqBin, err = BuildBinary(context.Background(), root, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testLogger() *zap.Logger {
	zc := zap.NewDevelopmentConfig()
	zc.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	zc.DisableStacktrace = true
	lg, _ := zc.Build()
	return lg
}

// runScenario plays s with a fresh (printed) or replayed seed and fails the
// test on any problem, keeping the bundle.
func runScenario(t *testing.T, s Scenario) *Result {
	if testing.Short() {
		t.Skip("fault scenarios take a while; skipped with -short")
	}
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	if s.Duration == 0 {
		s.Duration = *chaosTime
	}
	dir, err := os.MkdirTemp("", "raftq-chaos-"+s.Name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scenario %s: seed %d (replay: go test ./chaos -run '%s' -chaos.seed %d)", s.Name, seed, t.Name(), seed)
	res, err := Run(context.Background(), s, RunConfig{Binary: raftqBin, Dir: dir, Seed: seed, Logger: testLogger()})
	if err != nil {
		t.Fatalf("scenario %s (seed %d): harness error: %v; files in %s", s.Name, seed, err, dir)
	}
	r := res.Report
	t.Logf("%s: %d ops %v; lost %d, unexpected %d, duplicates %d, redeliveries %d, refused %d, linearizable %s; faults %v; failovers %v",
		s.Name, r.Ops, r.Counts, r.Lost, r.Unexpected, r.Duplicates, r.Redeliveries, r.Refused, r.Linearizable, res.Stats.Faults, res.Failovers)
	if r.Linearizable == "timeout" {
		t.Logf("WARNING: scenario %s: the linearizability check ran out of time (inconclusive on this machine); replay with -chaos.seed %d", s.Name, seed)
	}
	if !res.OK() {
		for _, p := range res.Problems {
			t.Error(p)
		}
		t.Fatalf("scenario %s failed with seed %d; bundle kept in %s", s.Name, seed, dir)
	}
	if *keepFlag {
		t.Logf("kept %s", dir)
	} else {
		os.RemoveAll(dir)
	}
	return res
}

func TestKill(t *testing.T) {
	res := runScenario(t, Scenario{Name: "kill", Faults: []string{KillLeader, KillFollower}})
	if res.Stats.Faults[KillLeader]+res.Stats.Faults[KillFollower] == 0 {
		t.Fatal("no kill happened")
	}
}

func TestPause(t *testing.T) {
	runScenario(t, Scenario{Name: "pause", Faults: []string{PauseLeader, PauseFollower}})
}

// An isolated leader must lose leadership (the nemesis checks it, which
// proves the proxies really cut traffic) and the rest must go on.
func TestIsolateLeader(t *testing.T) {
	res := runScenario(t, Scenario{Name: "isolate-leader", Faults: []string{IsolateLeader}})
	if res.Stats.Faults[IsolateLeader] == 0 {
		t.Fatal("no isolation happened")
	}
}

func TestPartition(t *testing.T) {
	runScenario(t, Scenario{Name: "partition", Faults: []string{PartitionHalf, OneWay, IsolateNode, SlowLink}})
}

func TestCrashPoints(t *testing.T) {
	res := runScenario(t, Scenario{Name: "crash-points", Faults: []string{CrashPoint}, Hold: 1500 * time.Millisecond})
	if res.Stats.CrashesAtPt == 0 {
		t.Fatal("no node crashed at a failpoint: are failpoints compiled in?")
	}
}

func TestDiskDamage(t *testing.T) {
	res := runScenario(t, Scenario{Name: "disk-damage", Faults: []string{TornTail, CorruptWAL, CorruptSnap}})
	if res.Stats.Faults[CorruptWAL] > 0 && res.Stats.Refusals == 0 {
		t.Fatal("a corrupted WAL never made a node refuse to start")
	}
}

// Membership churn under traffic: nodes join under fresh ids and leave,
// the leader among them.
func TestMembershipChurn(t *testing.T) {
	res := runScenario(t, Scenario{Name: "membership", Faults: []string{Membership}})
	if res.Stats.Faults[Membership] < 2 {
		t.Fatalf("only %d membership changes happened", res.Stats.Faults[Membership])
	}
}

// limitsMaxMessages is the pop queues' max_messages in TestLimits: with
// seven in ten of the pop clients' operations enqueues, a queue grows by
// about two messages in five of its operations until it is full, so it
// reaches 20 within a few seconds even on a slow machine, and stays
// there with pops making room and enqueues racing for it.
const limitsMaxMessages = 20

// Many clients with no pause between requests, so that proposals are
// gathered into large groups (one raft entry of many commands), through
// leader kills, pauses and crash points: nothing acknowledged is lost,
// nothing is delivered that was not sent or twice, and the replicas
// agree. The groups must really have been large. (Porcupine's check is
// left out: with this many clients at once it ran out of memory, past
// 14 GB; the other scenarios check linearizability with 6.)
func TestGroupCommit(t *testing.T) {
	res := runScenario(t, Scenario{Name: "groups",
		Faults:            []string{KillLeader, KillFollower, PauseLeader, CrashPoint},
		Workload:          Workload{Clients: 24, LeaseClients: 6, Enqueue: 0.55, Think: time.Microsecond},
		NoLinearizability: true})
	if res.Groups == 0 {
		t.Fatal("the nodes report no groups proposed")
	}
	per := float64(res.GroupedCommands) / float64(res.Groups)
	t.Logf("%d commands in %d entries: %.1f per entry", res.GroupedCommands, res.Groups, per)
	if per < 1.5 {
		t.Errorf("24 clients without a pause averaged %.1f commands per entry: groups did not form", per)
	}
}

// Producers run into a queue's max_messages while nodes are killed,
// paused and cut off: a refused enqueue (429 naming the limit) must be
// recorded as failed and never come out, nothing acknowledged may be
// lost or duplicated, the history must stay linearizable, the replicas
// must agree, no queue may hold more than the limit, and the drain must
// still empty everything.
func TestLimits(t *testing.T) {
	res := runScenario(t, Scenario{Name: "limits",
		Faults:     []string{KillLeader, KillFollower, PauseLeader, PauseFollower, PartitionHalf},
		Workload:   Workload{Enqueue: 0.7},
		QueueLimit: limitsMaxMessages})
	if res.Report.Refused == 0 {
		// Only a machine too slow for the queues to fill gets here: the
		// rest of the run still held, so this proves less, not wrong.
		t.Logf("no enqueue was refused by max_messages %d (%v): the limit was never reached on this machine", limitsMaxMessages, res.Report.Counts)
		return
	}
	t.Logf("%d enqueues refused by a limit", res.Report.Refused)
}
