// Command raftq-bench measures raftq: it starts a local 3-node cluster of
// real raftq processes on loopback (or uses --targets), runs phases of
// synchronous clients and prints, for each, msgs/s, latency percentiles
// and errors, next to a "ceiling" phase run by the same client against a
// trivial in-process HTTP handler, so every figure reads as a fraction of
// what this machine's HTTP stack can do. Run it from the repository.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

type options struct {
	targets     []string
	n           int
	size        int
	concurrency []int
	batch       int
	jsonOut     bool
	keep        bool
	fill        int
	snapCount   int
	nodeFlags   []string
	phases      map[string]bool // nil: all
}

func parseFlags(args []string) (options, error) {
	var o options
	var targets, conc string
	fs := flag.NewFlagSet("raftq-bench", flag.ContinueOnError)
	fs.StringVar(&targets, "targets", "", "client API URLs of running nodes, comma-separated (default: start a local 3-node cluster)")
	fs.IntVar(&o.n, "n", 20000, "messages per phase")
	fs.IntVar(&o.size, "size", 256, "message size in bytes")
	fs.StringVar(&conc, "c", "1,16,64", "client concurrencies of the enqueue phases")
	fs.IntVar(&o.batch, "batch", 100, "messages per batch request")
	fs.BoolVar(&o.jsonOut, "json", false, "print JSON instead of a table")
	fs.BoolVar(&o.keep, "keep", false, "keep the local cluster's data dir")
	fs.IntVar(&o.snapCount, "snapshot-count", 10000, "the local nodes' --snapshot-count")
	var nodeFlags, only string
	fs.StringVar(&only, "phases", "", "run only these phases, comma-separated, of ceiling, enqueue, pop, batch, lease (default all; pop drains what enqueue queued)")
	fs.StringVar(&nodeFlags, "node-flags", "", "extra flags for the local nodes, space-separated (to compare variants)")
	fs.IntVar(&o.fill, "fill", 0, "after the phases, queue this many messages (in batches), then report peak RSS, the longest snapshot stall and a node's restart time (local cluster only)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if targets != "" {
		o.targets = strings.Split(targets, ",")
	}
	o.nodeFlags = strings.Fields(nodeFlags)
	if only != "" {
		o.phases = map[string]bool{}
		for _, p := range strings.Split(only, ",") {
			if !slices.Contains([]string{"ceiling", "enqueue", "pop", "batch", "lease"}, p) {
				return o, fmt.Errorf("-phases: unknown phase %q", p)
			}
			o.phases[p] = true
		}
	}
	for _, c := range strings.Split(conc, ",") {
		v, err := strconv.Atoi(c)
		if err != nil || v < 1 || v > 1024 {
			return o, fmt.Errorf("-c: %q is not a concurrency from 1 to 1024", c)
		}
		o.concurrency = append(o.concurrency, v)
	}
	if o.n < 1 || o.size < 1 || o.batch < 1 || o.batch > 1000 {
		return o, errors.New("-n and -size must be positive and -batch 1 to 1000")
	}
	return o, nil
}

// Result is one phase's figures.
type Result struct {
	Phase       string     `json:"phase"`
	Concurrency int        `json:"concurrency"`
	Messages    int        `json:"messages"`
	MsgsPerSec  float64    `json:"msgs_per_sec"`
	P50         float64    `json:"p50_ms"` // per request
	P99         float64    `json:"p99_ms"`
	Max         float64    `json:"max_ms"`
	Errors      int64      `json:"errors"`
	Mechanism   *Mechanism `json:"mechanism,omitempty"`
}

var hc = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute},
}

// run drives requests: c clients, each synchronous, until total messages
// are done; each call of req moves per messages and reports success.
func runPlain(phase string, c, total, per int, req func(client, i int) (int, error)) Result {
	var next atomic.Int64
	var errs atomic.Int64
	var done atomic.Int64
	lat := make([][]time.Duration, c)
	start := time.Now()
	var wg sync.WaitGroup
	for cl := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i*per >= total {
					return
				}
				t := time.Now()
				moved, err := req(cl, i)
				lat[cl] = append(lat[cl], time.Since(t))
				if err != nil {
					errs.Add(1)
					continue
				}
				if moved == 0 { // nothing left (dequeue phases)
					return
				}
				done.Add(int64(moved))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	return Result{Phase: phase, Concurrency: c, Messages: int(done.Load()), MsgsPerSec: float64(done.Load()) / elapsed.Seconds(),
		P50: pct(0.5), P99: pct(0.99), Max: pct(1), Errors: errs.Load()}
}

func post(url string, body []byte, want int) (*http.Response, []byte, error) {
	resp, err := hc.Post(url, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != want {
		err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return resp, b, err
}

func get(url string) (int, []byte, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func phases(o options, ceiling string, s *sampler) []Result {
	body := bytes.Repeat([]byte("x"), o.size)
	t := o.targets
	node := func(cl int) string { return t[cl%len(t)] }
	var out []Result
	want := func(p string) bool { return o.phases == nil || o.phases[p] }
	// run, with what the nodes did meanwhile.
	run := func(phase string, c, total, per int, req func(client, i int) (int, error)) Result {
		before := s.take()
		r := runPlain(phase, c, total, per, req)
		r.Mechanism = mechanism(before, s.take(), r.Messages)
		return r
	}
	for _, c := range o.concurrency {
		if !want("ceiling") {
			break
		}
		out = append(out, runPlain("ceiling (null HTTP handler)", c, o.n, 1, func(cl, i int) (int, error) {
			_, _, err := post(ceiling, body, http.StatusCreated)
			return 1, err
		}))
	}
	for _, c := range o.concurrency {
		if !want("enqueue") {
			break
		}
		out = append(out, run("enqueue", c, o.n, 1, func(cl, i int) (int, error) {
			_, _, err := post(node(cl)+"/queues/bench", body, http.StatusCreated)
			return 1, err
		}))
	}
	queued := 0
	for _, r := range out {
		if r.Phase == "enqueue" {
			queued += r.Messages
		}
	}
	c := o.concurrency[len(o.concurrency)-1]
	if want("pop") {
		out = append(out, run("dequeue (pop)", c, queued, 1, func(cl, i int) (int, error) {
			status, _, err := get(node(cl) + "/queues/bench")
			if err != nil {
				return 0, err
			}
			if status == http.StatusNoContent {
				return 0, nil
			}
			if status != http.StatusOK {
				return 0, fmt.Errorf("status %d", status)
			}
			return 1, nil
		}))
	}
	batch := struct {
		Messages []map[string]string `json:"messages"`
	}{}
	for range o.batch {
		batch.Messages = append(batch.Messages, map[string]string{"body": string(body)})
	}
	bb, _ := json.Marshal(batch)
	if !want("batch") {
		return append(out, leaseAck(o, run, node, body)...)
	}
	out = append(out, run(fmt.Sprintf("batch enqueue (%d/request)", o.batch), 16, o.n*5, o.batch, func(cl, i int) (int, error) {
		_, _, err := post(node(cl)+"/queues/b/batch", bb, http.StatusCreated)
		return o.batch, err
	}))
	out = append(out, run(fmt.Sprintf("batch dequeue (max=%d)", o.batch), 16, o.n*5, o.batch, func(cl, i int) (int, error) {
		status, b, err := get(fmt.Sprintf("%s/queues/b?max=%d", node(cl), o.batch))
		if err != nil || status == http.StatusNoContent {
			return 0, err
		}
		var v struct{ Messages []json.RawMessage }
		if err := json.Unmarshal(b, &v); err != nil || status != http.StatusOK {
			return 0, fmt.Errorf("status %d: %v", status, err)
		}
		return len(v.Messages), nil
	}))
	return append(out, leaseAck(o, run, node, body)...)
}

// leaseAck is the consumer phase: enqueue, lease, ack, one message at a
// time per client.
func leaseAck(o options, run func(string, int, int, int, func(int, int) (int, error)) Result, node func(int) string, body []byte) []Result {
	if o.phases != nil && !o.phases["lease"] {
		return nil
	}
	c := o.concurrency[len(o.concurrency)-1]
	return []Result{run("lease + ack", c, o.n, 1, func(cl, i int) (int, error) {
		if _, _, err := post(node(cl)+"/queues/leased", body, http.StatusCreated); err != nil {
			return 0, err
		}
		resp, _, err := post(node(cl)+"/queues/leased/leases?ttl=60s", nil, http.StatusOK)
		if err != nil {
			return 0, err
		}
		req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/queues/leased/messages/%s?lease=%s", node(cl),
			resp.Header.Get("Message-Id"), resp.Header.Get("Lease-Token")), nil)
		ack, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		ack.Body.Close()
		if ack.StatusCode != http.StatusNoContent {
			return 0, fmt.Errorf("ack status %d", ack.StatusCode)
		}
		return 1, nil
	}), run("lease 10 + ack 10 (batch)", c, o.n, 10, leaseMany(node, body, 10))}
}

// leaseMany is the consumer pattern of SQS clients: a batch of n sent,
// up to n leased in one request (POST /leases?max=n), all acked in one
// (POST /acks): three requests for n messages.
func leaseMany(node func(int) string, body []byte, n int) func(cl, i int) (int, error) {
	batch := struct {
		Messages []map[string]string `json:"messages"`
	}{}
	for range n {
		batch.Messages = append(batch.Messages, map[string]string{"body": string(body)})
	}
	bb, _ := json.Marshal(batch)
	return func(cl, i int) (int, error) {
		if _, _, err := post(node(cl)+"/queues/many/batch", bb, http.StatusCreated); err != nil {
			return 0, err
		}
		_, b, err := post(fmt.Sprintf("%s/queues/many/leases?ttl=60s&max=%d", node(cl), n), nil, http.StatusOK)
		if err != nil {
			return 0, err
		}
		var ls struct {
			Leases []struct {
				ID    uint64 `json:"id"`
				Token string `json:"lease_token"`
			} `json:"leases"`
		}
		if err := json.Unmarshal(b, &ls); err != nil {
			return 0, err
		}
		acks := struct {
			Acks []map[string]any `json:"acks"`
		}{}
		for _, l := range ls.Leases {
			acks.Acks = append(acks.Acks, map[string]any{"id": l.ID, "lease": l.Token})
		}
		ab, _ := json.Marshal(acks)
		if _, _, err := post(node(cl)+"/queues/many/acks", ab, http.StatusOK); err != nil {
			return 0, err
		}
		return len(ls.Leases), nil
	}
}

// cluster is a local 3-node cluster of real processes.
type cluster struct {
	dir   string
	procs []*exec.Cmd
	args  [][]string
	bin   string
	apis  []string
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startCluster(ctx context.Context, snapCount int, nodeFlags []string) (*cluster, error) {
	dir, err := os.MkdirTemp("", "raftq-bench-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir}
	bin := filepath.Join(dir, "raftq")
	c.bin = bin
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/raftq")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building raftq (run from the repository): %w\n%s", err, out)
	}
	var peers []string
	for range 3 {
		peers = append(peers, "http://"+freeAddr())
		c.apis = append(c.apis, freeAddr())
	}
	for i := range 3 {
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("node-%d.log", i+1)))
		if err != nil {
			return nil, err
		}
		args := []string{"--id", strconv.Itoa(i + 1), "--cluster", strings.Join(peers, ","),
			"--api-addr", c.apis[i], "--data-dir", filepath.Join(dir, fmt.Sprintf("node-%d", i+1)),
			"--snapshot-count", strconv.Itoa(snapCount)}
		args = append(args, nodeFlags...)
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		c.procs = append(c.procs, cmd)
		c.args = append(c.args, args)
		c.apis[i] = "http://" + c.apis[i]
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, err := post(c.apis[0]+"/queues/warmup", []byte("x"), http.StatusCreated); err == nil {
			return c, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.stop(false)
	return nil, errors.New("the local cluster did not start")
}

// pids are the nodes' process ids.
func (c *cluster) pids() []int {
	var out []int
	for _, p := range c.procs {
		out = append(out, p.Process.Pid)
	}
	return out
}

// peakRSS reads each node's high-water resident set (VmHWM) in MiB.
func (c *cluster) peakRSS() []float64 {
	var out []float64
	for _, p := range c.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Process.Pid))
		mib := 0.0
		if err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
					kb, _ := strconv.ParseFloat(f[1], 64)
					mib = kb / 1024
				}
			}
		}
		out = append(out, mib)
	}
	return out
}

// FillReport is what -fill measured.
type FillReport struct {
	Messages       int       `json:"messages"`
	MsgsPerSec     float64   `json:"msgs_per_sec"`
	PeakRSSMB      []float64 `json:"peak_rss_mib"`
	MaxSnapshotMS  float64   `json:"max_snapshot_stall_ms"`
	RestartServeMS float64   `json:"restart_to_serving_ms"`
	// RestartAllServeMS is from killing all three to a served dequeue.
	RestartAllServeMS float64   `json:"restart_all_to_dequeue_ms"`
	PeakRSSAfterMB    []float64 `json:"peak_rss_after_restart_mib"`
}

// fillAndRestart queues n messages, then kills node 3 and times its
// restart until it answers a linearizable read, then kills all three and
// times their restart until a dequeue is served.
func (c *cluster) fillAndRestart(n, batch int, body []byte) (FillReport, error) {
	msgs := struct {
		Messages []map[string]string `json:"messages"`
	}{}
	for range batch {
		msgs.Messages = append(msgs.Messages, map[string]string{"body": string(body)})
	}
	bb, _ := json.Marshal(msgs)
	r := runPlain("fill", 16, n, batch, func(cl, i int) (int, error) {
		_, _, err := post(c.apis[cl%3]+"/queues/fill/batch", bb, http.StatusCreated)
		return batch, err
	})
	rep := FillReport{Messages: r.Messages, MsgsPerSec: r.MsgsPerSec, PeakRSSMB: c.peakRSS()}
	rep.MaxSnapshotMS = c.settledSnapshotStall()
	start := time.Now()
	if err := c.restart(2); err != nil {
		return rep, err
	}
	if err := c.until(answers200(c.apis[2] + "/queues")); err != nil {
		return rep, fmt.Errorf("node 3 after its restart: %w", err)
	}
	rep.RestartServeMS = float64(time.Since(start).Milliseconds())
	// Then the whole cluster at once, timed until a dequeue is served.
	for _, p := range c.procs {
		p.Process.Kill()
		p.Wait()
	}
	start = time.Now()
	for i := range c.procs {
		if err := c.restart(i); err != nil {
			return rep, err
		}
	}
	if err := c.until(answers200(c.apis[0] + "/queues/fill")); err != nil {
		return rep, fmt.Errorf("the cluster after restarting all three: %w", err)
	}
	rep.RestartAllServeMS = float64(time.Since(start).Milliseconds())
	rep.PeakRSSAfterMB = c.peakRSS()
	return rep, nil
}

// restart kills node i (if it runs) and starts it again on the same data.
func (c *cluster) restart(i int) error {
	p := c.procs[i]
	p.Process.Kill()
	p.Wait() // an error if it was already reaped: nothing to wait for
	logf, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("node-%d.log", i+1)), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, c.args[i]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	c.procs[i] = cmd
	return nil
}

// answers200 reports whether a GET of url answers 200 (a linearizable
// read or a served dequeue).
func answers200(url string) func() bool {
	return func() bool {
		status, _, err := get(url)
		return err == nil && status == http.StatusOK
	}
}

// until polls ok for up to 2 minutes.
func (c *cluster) until(ok func() bool) error {
	for start := time.Now(); time.Since(start) < 2*time.Minute; {
		if ok() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("not served within 2 minutes")
}

// settledSnapshotStall waits for the snapshots the fill started, which
// finish in the background and log only then, and returns the longest
// stall: once no snapshot has been saved for 4 s (at most 60 s).
func (c *cluster) settledSnapshotStall() float64 {
	worst, saved := c.maxSnapshotStall()
	quiet := time.Now()
	for start := time.Now(); time.Since(quiet) < 4*time.Second && time.Since(start) < time.Minute; {
		time.Sleep(200 * time.Millisecond)
		w, n := c.maxSnapshotStall()
		if n != saved {
			worst, saved, quiet = w, n, time.Now()
		}
	}
	return worst
}

// maxSnapshotStall is the longest "saved snapshot" took in the logs, and
// how many snapshots were saved.
func (c *cluster) maxSnapshotStall() (float64, int) {
	worst, saved := 0.0, 0
	for i := range c.procs {
		b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("node-%d.log", i+1)))
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "saved snapshot") {
				continue
			}
			saved++
			// raftq logs durations as seconds: "took":0.0123 (JSON),
			// "took": 0.0123 (console)
			_, after, ok := strings.Cut(strings.Replace(line, `"took": `, `"took":`, 1), `"took":`)
			if !ok {
				continue
			}
			secs, err := strconv.ParseFloat(strings.TrimRight(strings.Fields(after)[0], ",}"), 64)
			if err == nil {
				worst = max(worst, secs*1000)
			}
		}
	}
	return worst, saved
}

func (c *cluster) stop(keep bool) {
	for _, p := range c.procs {
		p.Process.Kill()
		p.Wait()
	}
	if !keep {
		os.RemoveAll(c.dir)
	}
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftq-bench:", err)
		os.Exit(2)
	}
	var c *cluster
	if len(o.targets) == 0 {
		if c, err = startCluster(context.Background(), o.snapCount, o.nodeFlags); err != nil {
			fmt.Fprintln(os.Stderr, "raftq-bench:", err)
			os.Exit(1)
		}
		defer c.stop(o.keep)
		o.targets = c.apis
	}
	null := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"queue":"null","id":1}` + "\n"))
	}))
	defer null.Close()
	s := &sampler{targets: o.targets}
	if c != nil {
		s.pids = c.pids
	}
	results := phases(o, null.URL+"/queues/null", s)
	var rss []float64
	var fill *FillReport
	if c != nil {
		rss = c.peakRSS()
		if o.fill > 0 {
			f, err := c.fillAndRestart(o.fill, o.batch, bytes.Repeat([]byte("x"), o.size))
			if err != nil {
				fmt.Fprintln(os.Stderr, "raftq-bench: fill:", err)
			}
			fill = &f
		}
	}
	if o.jsonOut {
		json.NewEncoder(os.Stdout).Encode(struct {
			Results   []Result    `json:"results"`
			PeakRSSMB []float64   `json:"peak_rss_mib,omitempty"`
			Fill      *FillReport `json:"fill,omitempty"`
		}{results, rss, fill})
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tC\tmsgs\tmsgs/s\tp50 ms\tp99 ms\tmax ms\terrors\tcmds/entry\tentries/Ready\traft msgs/msg\tfsyncs/s\tCPU µs/msg per node\tGC µs/msg per node\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.1f\t%d\t%s\t\n", r.Phase, r.Concurrency, r.Messages, r.MsgsPerSec, r.P50, r.P99, r.Max, r.Errors, r.Mechanism)
	}
	tw.Flush()
	if rss != nil {
		fmt.Printf("\npeak RSS per node (MiB): %.0f %.0f %.0f\n", rss[0], rss[1], rss[2])
	}
	if f := fill; f != nil {
		fmt.Printf("\nfill: %d messages queued at %.0f msgs/s; peak RSS per node (MiB) %.0f %.0f %.0f; longest snapshot stall of the Ready loop %.1f ms; node 3 restarted and serving after %.0f ms; all three restarted and serving a dequeue after %.0f ms, peak RSS then (MiB) %.0f %.0f %.0f\n",
			f.Messages, f.MsgsPerSec, f.PeakRSSMB[0], f.PeakRSSMB[1], f.PeakRSSMB[2], f.MaxSnapshotMS, f.RestartServeMS,
			f.RestartAllServeMS, f.PeakRSSAfterMB[0], f.PeakRSSAfterMB[1], f.PeakRSSAfterMB[2])
	}
}
