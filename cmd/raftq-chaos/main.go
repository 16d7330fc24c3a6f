// Command raftq-chaos runs raftq's fault suite for as long as you like:
// N scenarios, each a real cluster under traffic with a random mix of
// faults, checked for lost, duplicated and unexpected messages and for
// linearizability. It prints a summary table and keeps a bundle for every
// failed run. Run it from the repository (scripts/chaos.sh does).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/raftq/raftq/chaos"
)

type options struct {
	scenarios int
	duration  time.Duration
	nodes     int
	faults    []string
	mix       int
	seed      uint64
	out       string
	keep      bool
	jsonOut   bool
	check     string
	verbose   bool
}

func parseFlags(args []string) (options, error) {
	var o options
	var faults string
	fs := flag.NewFlagSet("raftq-chaos", flag.ContinueOnError)
	fs.IntVar(&o.scenarios, "scenarios", 10, "how many scenarios to run")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "traffic time of each scenario")
	fs.IntVar(&o.nodes, "nodes", 3, "cluster size (3 or 5)")
	fs.StringVar(&faults, "faults", "all", "comma-separated faults to draw from, or all: "+strings.Join(chaos.AllFaults, ","))
	fs.IntVar(&o.mix, "mix", 4, "how many different faults each scenario draws from")
	fs.Uint64Var(&o.seed, "seed", 0, "base seed (0: from the clock); scenario i uses seed+i")
	fs.StringVar(&o.out, "out", "", "where run directories go (default: a new temp dir)")
	fs.BoolVar(&o.keep, "keep", false, "keep every run's directory, not only failed ones")
	fs.BoolVar(&o.jsonOut, "json", false, "print results as JSON instead of a table")
	fs.StringVar(&o.check, "check", "", "only re-check a saved history.json and print the report")
	fs.BoolVar(&o.verbose, "v", false, "log the harness's progress to stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if faults == "all" {
		o.faults = chaos.AllFaults
	} else {
		for _, f := range strings.Split(faults, ",") {
			if !slices.Contains(chaos.AllFaults, f) {
				return o, fmt.Errorf("unknown fault %q (known: %s)", f, strings.Join(chaos.AllFaults, ","))
			}
			o.faults = append(o.faults, f)
		}
	}
	if o.nodes != 3 && o.nodes != 5 {
		return o, errors.New("--nodes must be 3 or 5")
	}
	if o.scenarios < 1 || o.duration < 5*time.Second || o.mix < 1 {
		return o, errors.New("--scenarios ≥ 1, --duration ≥ 5s and --mix ≥ 1 are required")
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftq-chaos:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.check != "" {
		os.Exit(recheck(o.check))
	}
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftq-chaos:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func logger(verbose bool) *zap.Logger {
	if !verbose {
		return zap.NewNop()
	}
	zc := zap.NewDevelopmentConfig()
	zc.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	zc.DisableStacktrace = true
	lg, _ := zc.Build()
	return lg
}

func run(ctx context.Context, o options) (bool, error) {
	if o.out == "" {
		dir, err := os.MkdirTemp("", "raftq-chaos-runs-")
		if err != nil {
			return false, err
		}
		o.out = dir
	}
	bin, err := chaos.BuildBinary(ctx, ".", o.out)
	if err != nil {
		return false, err
	}
	lg := logger(o.verbose)
	rng := rand.New(rand.NewPCG(o.seed, 0x6d6978))
	var results []*chaos.Result
	allOK := true
	for i := range o.scenarios {
		faults := append([]string(nil), o.faults...)
		rng.Shuffle(len(faults), func(a, b int) { faults[a], faults[b] = faults[b], faults[a] })
		faults = faults[:min(o.mix, len(faults))]
		slices.Sort(faults)
		seed := o.seed + uint64(i)
		dir := filepath.Join(o.out, fmt.Sprintf("run-%02d-%d", i+1, seed))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, err
		}
		s := chaos.Scenario{Name: fmt.Sprintf("run-%d", i+1), Faults: faults, Duration: o.duration, Nodes: o.nodes}
		fmt.Fprintf(os.Stderr, "scenario %d/%d seed %d faults %s ...\n", i+1, o.scenarios, seed, strings.Join(faults, ","))
		res, err := chaos.Run(ctx, s, chaos.RunConfig{Binary: bin, Dir: dir, Seed: seed, Logger: lg})
		if err != nil {
			return false, fmt.Errorf("scenario %d (seed %d): %w; files in %s", i+1, seed, err, dir)
		}
		results = append(results, res)
		if !res.OK() {
			allOK = false
			fmt.Fprintf(os.Stderr, "  FAILED: %s\n  bundle: %s\n", strings.Join(res.Problems, "; "), dir)
		} else if !o.keep {
			os.RemoveAll(dir)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", " ")
		return allOK, enc.Encode(results)
	}
	printTable(results)
	return allOK, nil
}

func printTable(results []*chaos.Result) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tseed\tops\tok\tunknown\tfaults\tlost\tdup\tunexpected\tlinearizable\tfailover p50\tfailover p99\tresult\t")
	var all []time.Duration
	for i, r := range results {
		rep := r.Report
		ok := rep.Counts["enqueue/ok"] + rep.Counts["dequeue/ok"]
		unknown := rep.Counts["enqueue/unknown"] + rep.Counts["dequeue/unknown"]
		nf := 0
		for _, n := range r.Stats.Faults {
			nf += n
		}
		all = append(all, r.Failovers...)
		result := "pass"
		if !r.OK() {
			result = "FAIL"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", i+1, r.Seed, rep.Ops, ok, unknown, nf,
			rep.Lost, rep.Duplicates, rep.Unexpected, rep.Linearizable,
			percentile(r.Failovers, 0.5), percentile(r.Failovers, 0.99), result)
	}
	tw.Flush()
	slices.Sort(all)
	fmt.Printf("\nfailover (leader fault → first acknowledged enqueue) over %d leader faults: p50 %s, p99 %s, max %s\n",
		len(all), percentile(all, 0.5), percentile(all, 0.99), percentile(all, 1))
}

// percentile of sorted-or-not durations, nearest rank; "-" when empty.
func percentile(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	i = max(0, min(i, len(s)-1))
	return s[i].Round(time.Millisecond).String()
}

func recheck(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftq-chaos:", err)
		return 1
	}
	var ops []chaos.Op
	if err := json.Unmarshal(b, &ops); err != nil {
		fmt.Fprintln(os.Stderr, "raftq-chaos: history:", err)
		return 1
	}
	rep := chaos.Check(ops, 5*time.Minute)
	out, _ := json.MarshalIndent(rep, "", " ")
	fmt.Println(string(out))
	if !rep.OK() {
		return 1
	}
	return 0
}
