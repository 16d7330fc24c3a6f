package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Scenario is one run: a cluster, traffic, and faults drawn from a list.
type Scenario struct {
	Name     string
	Faults   []string      // drawn at random, one at a time
	Duration time.Duration // of traffic under faults
	Hold     time.Duration // how long each fault lasts; default 2s
	Quiet    time.Duration // healthy time between faults; default 1s
	Nodes    int           // default 3
	Workload Workload
	// QueueLimit, if set, is the max_messages of every pop queue, set
	// before the traffic: enqueues past it are refused (429, recorded as
	// failed, never as lost), and after the faults, before the drain,
	// every node must show no pop queue holding more.
	QueueLimit int
	// NoLinearizability skips porcupine's check, whose cost grows
	// exponentially with concurrent clients, for a workload too parallel
	// for it; loss, duplicates, unexpected deliveries and convergence are
	// still checked.
	NoLinearizability bool
}

// RunConfig is what a run needs besides the scenario.
type RunConfig struct {
	Binary       string
	Dir          string // becomes the failure bundle; the caller removes it on success
	Seed         uint64
	CheckTimeout time.Duration // porcupine's budget; default 3m
	Logger       *zap.Logger
}

// Result is a finished run.
type Result struct {
	Scenario  string          `json:"scenario"`
	Seed      uint64          `json:"seed"`
	Report    *Report         `json:"report"`
	Stats     *Stats          `json:"nemesis"`
	Failovers []time.Duration `json:"failovers"` // leader fault → first acknowledged enqueue
	// Groups and GroupedCommands are what the nodes running at the end of
	// the traffic proposed since they last started: entries, and the
	// commands those carried.
	Groups, GroupedCommands uint64
	Problems                []string `json:"problems"` // from every stage
	Dir                     string   `json:"dir"`
}

// OK reports whether the run found no problem.
func (r *Result) OK() bool { return len(r.Problems) == 0 }

// Run plays a scenario and checks it. An error means the harness itself
// could not proceed; problems found in raftq are in Result.Problems. On
// any problem the bundle (history.json, linearizability.html, result.json,
// node logs and data dirs) is left in cfg.Dir.
func Run(ctx context.Context, s Scenario, cfg RunConfig) (*Result, error) {
	if s.Hold == 0 {
		s.Hold = 2 * time.Second
	}
	if s.Quiet == 0 {
		s.Quiet = time.Second
	}
	if cfg.CheckTimeout == 0 {
		// Far beyond what a history of a few minutes needs (seconds), for a
		// busy machine and the race detector.
		cfg.CheckTimeout = 3 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	lg := cfg.Logger.With(zap.String("scenario", s.Name), zap.Uint64("seed", cfg.Seed))
	if f, err := os.Create(filepath.Join(cfg.Dir, "harness.log")); err == nil {
		defer f.Close()
		file := zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.Lock(f), zap.InfoLevel)
		lg = lg.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, file) }))
	}
	lg.Info("scenario starting", zap.Strings("faults", s.Faults), zap.Duration("duration", s.Duration))
	res := &Result{Scenario: s.Name, Seed: cfg.Seed, Dir: cfg.Dir, Stats: &Stats{Faults: map[string]int{}}}
	c, err := StartCluster(ctx, ClusterConfig{Binary: cfg.Binary, Nodes: s.Nodes, Dir: cfg.Dir, Seed: cfg.Seed, Logger: lg})
	if err != nil {
		return nil, err
	}
	defer c.Close()

	if s.QueueLimit > 0 {
		if err := setQueueLimit(ctx, c, popQueues(s), s.QueueLimit, lg); err != nil {
			return nil, err
		}
	}
	h := NewHistory()
	if err := play(ctx, s, cfg, c, h, res.Stats, lg); err != nil {
		return nil, err
	}
	res.Problems = append(res.Problems, res.Stats.Problems...)
	for _, n := range c.Members() {
		if cs, err := c.Counters(ctx, n.ID); err == nil {
			res.Groups += cs["groups"]
			res.GroupedCommands += cs["grouped_commands"]
		}
	}
	res.Problems = append(res.Problems, settle(ctx, s, c, h, lg)...)

	ops := h.Ops()
	checkStart := time.Now()
	timeout := cfg.CheckTimeout
	if s.NoLinearizability {
		timeout = -1
	}
	res.Report = Check(ops, timeout)
	res.Problems = append(res.Problems, res.Report.Problems...)
	res.Failovers = failovers(ops, res.Stats.LeaderFaults)
	lg.Info("scenario finished", zap.Int("ops", len(ops)), zap.Bool("ok", res.OK()), zap.Duration("check", time.Since(checkStart)),
		zap.Any("counts", res.Report.Counts), zap.Durations("failovers", res.Failovers))
	if !res.OK() {
		if err := writeBundle(cfg.Dir, h, res); err != nil {
			lg.Error("writing failure bundle", zap.Error(err))
		}
	}
	return res, nil
}

// play runs traffic for s.Duration with faults drawn one at a time. A
// fault still in progress when the traffic stops is seen through and
// undone before play returns (see nemesis.inject).
func play(ctx context.Context, s Scenario, cfg RunConfig, c *Cluster, h *History, stats *Stats, lg *zap.Logger) error {
	s.Workload.Seed = cfg.Seed
	trafficCtx, stopTraffic := context.WithTimeout(ctx, s.Duration)
	defer stopTraffic()
	trafficDone := make(chan struct{})
	go func() { s.Workload.Run(trafficCtx, c, h); close(trafficDone) }()

	nem := &nemesis{c: c, h: h, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6e656d)), lg: lg, hold: s.Hold, stats: stats,
		ended: trafficCtx.Done(), stepDown: stepDownWait(c.Config().ElectionTimeout())}
	var err error
	for trafficCtx.Err() == nil && len(s.Faults) > 0 {
		nem.wait(s.Quiet)
		if trafficCtx.Err() != nil {
			break
		}
		if err = nem.inject(trafficCtx, s.Faults[nem.rng.IntN(len(s.Faults))]); err != nil {
			break
		}
	}
	stopTraffic()
	<-trafficDone
	if err != nil {
		return fmt.Errorf("chaos: nemesis: %w", err)
	}
	return nil
}

// settle heals the cluster, waits for it to converge, drains every queue,
// reads each node's queues and requires convergence again. It returns the
// problems found. Its deadlines are generous: a slow answer is no fault.
func settle(ctx context.Context, s Scenario, c *Cluster, h *History, lg *zap.Logger) []string {
	lg.Info("healing")
	var problems []string
	start := time.Now()
	if err := c.HealAll(ctx); err != nil {
		problems = append(problems, fmt.Sprintf("heal: %v", err))
	}
	if _, err := c.WaitLeader(ctx, leaderTimeout); err != nil {
		problems = append(problems, err.Error())
	}
	if _, err := c.WaitConverged(ctx, convergeTimeout); err != nil {
		problems = append(problems, "before drain: "+err.Error())
	}
	healed := time.Since(start)
	if s.QueueLimit > 0 {
		problems = append(problems, checkQueueLimit(ctx, c, popQueues(s), s.QueueLimit, lg)...)
	}
	if err := Drain(ctx, c, h, popQueues(s), drainTimeout); err != nil {
		problems = append(problems, err.Error())
	}
	drained := time.Since(start)
	for _, n := range c.Members() {
		depths, err := finalDepths(ctx, c, n.ID)
		if err != nil {
			problems = append(problems, fmt.Sprintf("final read on node %d: %v", n.ID, err))
			continue
		}
		for q, d := range depths {
			if d != 0 {
				problems = append(problems, fmt.Sprintf("node %d still shows %d messages in %s after the drain", n.ID, d, q))
			}
		}
	}
	if _, err := c.WaitConverged(ctx, convergeTimeout); err != nil {
		problems = append(problems, "after drain: "+err.Error())
	}
	lg.Info("settled", zap.Duration("healed", healed), zap.Duration("drained", drained), zap.Duration("total", time.Since(start)))
	return problems
}

// popQueues is how many pop queues the scenario's workload uses.
func popQueues(s Scenario) int { return max(s.Workload.Queues, 3) }

// setQueueLimit sets max_messages on the first n pop queues through any
// node, asking again after a failed answer (the limit is a replicated
// write: once one node answered 200 it holds for every later write).
func setQueueLimit(ctx context.Context, c *Cluster, n, limit int, lg *zap.Logger) error {
	hc := &http.Client{Timeout: c.cfg.RequestTimeout + 2*time.Second}
	body := fmt.Sprintf(`{"max_messages":%d}`, limit)
	for i := range n {
		q := queueName(i)
		deadline := time.Now().Add(leaderTimeout)
		for k := 0; ; k++ {
			members := c.Members()
			id := members[k%len(members)].ID
			resp, b, _, err := do(hc, http.MethodPut, c.Node(id).API+"/queues/"+q+"/config", []byte(body))
			if err == nil && resp.StatusCode == http.StatusOK {
				lg.Info("queue limit set", zap.String("queue", q), zap.Int("max_messages", limit), zap.Uint64("node", id))
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				if err == nil {
					err = fmt.Errorf("%s: %s", resp.Status, b)
				}
				return fmt.Errorf("chaos: set max_messages of %s: %v", q, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// checkQueueLimit reads every member's queues (after convergence, before
// the drain) and reports a pop queue holding more than limit messages
// (ready, leased or delayed).
func checkQueueLimit(ctx context.Context, c *Cluster, n, limit int, lg *zap.Logger) []string {
	var problems []string
	for _, m := range c.Members() {
		depths, err := finalDepths(ctx, c, m.ID)
		if err != nil {
			problems = append(problems, fmt.Sprintf("read of the queue limit on node %d: %v", m.ID, err))
			continue
		}
		for i := range n {
			q := queueName(i)
			if depths[q] > limit {
				problems = append(problems, fmt.Sprintf("node %d holds %d messages in %s, past its max_messages %d", m.ID, depths[q], q, limit))
			}
		}
		lg.Info("queue depths at the limit", zap.Uint64("node", m.ID), zap.Any("depths", depths), zap.Int("max_messages", limit))
	}
	return problems
}

// finalDepths reads node id's queues after the drain, asking again after a
// failed or timed-out read, for up to readTimeout.
func finalDepths(ctx context.Context, c *Cluster, id uint64) (map[string]int, error) {
	deadline := time.Now().Add(readTimeout)
	for {
		depths, err := c.QueueDepths(ctx, id)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return depths, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// failovers measures, for each leader fault, the time to the first
// acknowledged enqueue called after it.
func failovers(ops []Op, faults []time.Duration) []time.Duration {
	var out []time.Duration
	for _, t0 := range faults {
		best := time.Duration(-1)
		for _, op := range ops {
			if op.Kind == "enqueue" && op.Outcome == OK && op.Call >= t0 && (best < 0 || op.Return-t0 < best) {
				best = op.Return - t0
			}
		}
		if best >= 0 {
			out = append(out, best)
		}
	}
	slices.Sort(out)
	return out
}

func writeBundle(dir string, h *History, res *Result) error {
	hb, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "history.json"), hb, 0o644); err != nil {
		return err
	}
	rb, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), rb, 0o644); err != nil {
		return err
	}
	if res.Report != nil {
		return res.Report.Visualize(filepath.Join(dir, "linearizability.html"))
	}
	return nil
}
