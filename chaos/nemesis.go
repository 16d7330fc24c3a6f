package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/raftq/raftq/internal/failpoint"
)

// Fault names, as scenarios and raftq-chaos --faults spell them.
const (
	KillLeader    = "kill-leader"
	KillFollower  = "kill-follower"
	PauseLeader   = "pause-leader"
	PauseFollower = "pause-follower"
	IsolateLeader = "isolate-leader"
	IsolateNode   = "isolate-follower"
	PartitionHalf = "partition"    // a minority and a majority
	OneWay        = "one-way"      // one direction of one link
	SlowLink      = "slow-link"    // delay and loss on one node's links
	CrashPoint    = "crash-point"  // SIGKILL at a failpoint
	TornTail      = "torn-tail"    // kill -9, truncate the WAL's last record, restart
	CorruptWAL    = "corrupt-wal"  // a flipped bit mid-WAL: must refuse to start
	CorruptSnap   = "corrupt-snap" // a flipped bit in the newest snapshot or its state file
	Membership    = "membership"   // add a node under a fresh id, or remove one (the leader half the time)
)

// AllFaults lists every fault.
var AllFaults = []string{KillLeader, KillFollower, PauseLeader, PauseFollower, IsolateLeader, IsolateNode,
	PartitionHalf, OneWay, SlowLink, CrashPoint, TornTail, CorruptWAL, CorruptSnap, Membership}

// nemesis injects faults into a running cluster.
type nemesis struct {
	c     *Cluster
	h     *History
	rng   *rand.Rand
	lg    *zap.Logger
	hold  time.Duration
	stats *Stats
	// ended is closed when the run ends. It cuts waits short (holds, the
	// wait for a crash at a failpoint, the healthy time between faults),
	// never a step that changes the cluster; see inject.
	ended <-chan struct{}
	// stepDown is how long an isolated leader may take to stop leading
	// (stepDownWait of the cluster's election timeout).
	stepDown time.Duration
}

// stepDownWait is how long an isolated leader may take to notice
// (CheckQuorum: one election timeout) and stop leading, on a busy machine
// where its ticks and the harness's polls can both be starved: ten
// election timeouts, and never under 10 s.
func stepDownWait(electionTimeout time.Duration) time.Duration {
	return max(10*electionTimeout, 10*time.Second)
}

// Stats counts what the nemesis did.
type Stats struct {
	Faults        map[string]int  `json:"faults"`
	LeaderFaults  []time.Duration `json:"leader_fault_times"` // when a leader was hit, on the history clock
	CrashesAtPt   int             `json:"crashes_at_failpoints"`
	Refusals      int             `json:"refused_corrupt_starts"`
	Repairs       int             `json:"torn_tail_repairs"`
	SnapFallbacks int             `json:"snapshot_fallbacks"`
	HarmlessFlips int             `json:"harmless_wal_flips"` // flips in bits no reader uses
	Problems      []string        `json:"problems,omitempty"`
}

func (n *nemesis) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	n.lg.Error("nemesis found a problem", zap.String("problem", msg))
	n.stats.Problems = append(n.stats.Problems, msg)
}

func (n *nemesis) ids() []uint64 {
	var out []uint64
	for _, nd := range n.c.Members() {
		out = append(out, nd.ID)
	}
	return out
}

func (n *nemesis) leader(ctx context.Context) (uint64, error) {
	return n.c.WaitLeader(ctx, leaderTimeout)
}

func (n *nemesis) follower(ctx context.Context) (uint64, error) {
	l, err := n.leader(ctx)
	if err != nil {
		return 0, err
	}
	var fs []uint64
	for _, id := range n.ids() {
		if id != l {
			fs = append(fs, id)
		}
	}
	return fs[n.rng.IntN(len(fs))], nil
}

// wait waits for d, or less if the run ends meanwhile.
func (n *nemesis) wait(d time.Duration) {
	select {
	case <-n.ended:
	case <-time.After(d):
	}
}

func (n *nemesis) markLeaderFault() {
	n.stats.LeaderFaults = append(n.stats.LeaderFaults, n.h.Since())
}

// inject plays one fault from start to undo. Its steps run under a context
// that the end of the run does not cancel, so a fault once begun is seen
// through and undone before inject returns — a flipped bit put back and its
// node restarted, a failpoint disarmed by a clean restart, a killed node
// restarted, a paused one resumed, the network healed, a membership
// change's outcome known — and healing, which follows, never meets a fault
// halfway (a node refusing to start on a bit not yet restored). The end of
// the run only cuts waiting short (n.wait).
func (n *nemesis) inject(ctx context.Context, fault string) error {
	ctx = context.WithoutCancel(ctx)
	n.stats.Faults[fault]++
	n.lg.Info("fault", zap.String("name", fault))
	switch fault {
	case KillLeader, KillFollower:
		return n.onNode(ctx, fault == KillLeader, n.c.Kill, func(id uint64) error { return n.c.Start(ctx, id) })
	case PauseLeader, PauseFollower:
		return n.onNode(ctx, fault == PauseLeader, n.c.Pause, n.c.Resume)
	case IsolateLeader, IsolateNode:
		return n.onNode(ctx, fault == IsolateLeader, func(id uint64) error {
			logFrom := fileSize(n.c.Node(id).LogPath)
			n.isolate(id)
			if fault == IsolateLeader {
				n.checkStepsDown(ctx, id, logFrom)
			}
			return nil
		}, func(uint64) error { n.c.Net.Heal(); return nil })
	case PartitionHalf:
		ids := n.ids()
		n.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		minority := ids[:(len(ids)-1)/2]
		if l := n.c.Leader(ctx); l != 0 && contains(minority, l) {
			n.markLeaderFault()
		}
		for _, a := range minority {
			for _, b := range ids[len(minority):] {
				n.c.Net.Set(Link{a, b}, LinkRule{Cut: true})
				n.c.Net.Set(Link{b, a}, LinkRule{Cut: true})
			}
		}
		n.lg.Info("partitioned", zap.Any("minority", minority))
		n.wait(n.hold)
		n.c.Net.Heal()
		return nil
	case OneWay:
		ids := n.ids()
		n.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		n.c.Net.Set(Link{ids[0], ids[1]}, LinkRule{Cut: true})
		n.lg.Info("one-way cut", zap.Uint64("from", ids[0]), zap.Uint64("to", ids[1]))
		n.wait(n.hold)
		n.c.Net.Heal()
		return nil
	case SlowLink:
		ids := n.ids()
		id := ids[n.rng.IntN(len(ids))]
		rule := LinkRule{Delay: time.Duration(20+n.rng.IntN(130)) * time.Millisecond, Loss: 0.05 + 0.15*n.rng.Float64()}
		for _, o := range n.ids() {
			if o != id {
				n.c.Net.Set(Link{id, o}, rule)
				n.c.Net.Set(Link{o, id}, rule)
			}
		}
		n.lg.Info("slow links", zap.Uint64("node", id), zap.Duration("delay", rule.Delay), zap.Float64("loss", rule.Loss))
		n.wait(n.hold)
		n.c.Net.Heal()
		return nil
	case CrashPoint:
		return n.crashPoint(ctx)
	case TornTail:
		return n.tornTail(ctx)
	case CorruptWAL:
		return n.corrupt(ctx, "wal", ".wal")
	case CorruptSnap:
		// The snapshot file (metadata) or the state file beside it.
		return n.corrupt(ctx, "snap", []string{".snap", ".snap.db"}[n.rng.IntN(2)])
	case Membership:
		return n.churn(ctx)
	}
	return fmt.Errorf("chaos: unknown fault %q", fault)
}

// onNode picks the leader or a follower, applies a fault to it, holds,
// and undoes it.
func (n *nemesis) onNode(ctx context.Context, leader bool, do, undo func(id uint64) error) error {
	id, err := n.pick(ctx, leader)
	if err != nil {
		return err
	}
	if err := do(id); err != nil {
		return err
	}
	n.wait(n.hold)
	return undo(id)
}

func contains(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func (n *nemesis) pick(ctx context.Context, leader bool) (uint64, error) {
	if leader {
		id, err := n.leader(ctx)
		if err == nil {
			n.markLeaderFault()
		}
		return id, err
	}
	return n.follower(ctx)
}

func (n *nemesis) isolate(id uint64) {
	for _, o := range n.ids() {
		if o != id {
			n.c.Net.Set(Link{id, o}, LinkRule{Cut: true})
			n.c.Net.Set(Link{o, id}, LinkRule{Cut: true})
		}
	}
	n.lg.Info("isolated", zap.Uint64("node", id))
}

// stepDownLog is what raft logs when CheckQuorum makes a leader step down.
const stepDownLog = "stepped down to follower since quorum is not active"

// checkStepsDown proves that the cut is real: an isolated leader must notice
// (CheckQuorum) and stop leading. A busy machine delays both the step-down
// and the answers that show it, and a slow answer is no fault: so the wait
// is long (n.stepDown), each poll has its own timeout, the node's own log
// line of the step-down (written after logFrom) is proof too, and only an
// answer convicts — "I lead" to a poll sent in the second half of the wait.
// A node that gave no such answer leaves the check undecided, not failed.
func (n *nemesis) checkStepsDown(ctx context.Context, id uint64, logFrom int64) {
	logPath := n.c.Node(id).LogPath
	start := time.Now()
	led := time.Duration(-1) // when the latest poll answered "I lead" was sent
	polls, unanswered := 0, 0
	for time.Since(start) < n.stepDown {
		sent := time.Since(start)
		st, err := n.c.State(ctx, id)
		polls++
		switch {
		case err == nil && st.Leader != id, logHasSince(logPath, logFrom, stepDownLog):
			n.lg.Info("isolated leader stepped down", zap.Uint64("node", id), zap.Duration("within", time.Since(start)),
				zap.Bool("answered", err == nil && st.Leader != id), zap.Int("polls", polls), zap.Int("unanswered", unanswered))
			return
		case err == nil:
			led = sent
		default:
			unanswered++
		}
		time.Sleep(20 * time.Millisecond)
	}
	if led < n.stepDown/2 {
		n.lg.Warn("isolated leader's step-down undecided: no answer late in the wait",
			zap.Uint64("node", id), zap.Duration("waited", n.stepDown), zap.Int("polls", polls), zap.Int("unanswered", unanswered))
		return
	}
	n.problem("isolated leader %d still leads: it said so to a poll sent %v after the cut (waited %v; %d of %d polls unanswered)",
		id, led.Round(time.Millisecond), n.stepDown, unanswered, polls)
}

// crashPoint restarts a node with one failpoint armed, waits for it to
// crash there (or the hold to pass), and restarts it clean.
func (n *nemesis) crashPoint(ctx context.Context) error {
	id, err := n.pick(ctx, n.rng.IntN(2) == 0)
	if err != nil {
		return err
	}
	pt := failpoint.All[n.rng.IntN(len(failpoint.All))]
	hit := 1 + n.rng.IntN(20)
	if strings.Contains(pt, "Snap") || pt == failpoint.WALAfterRelease {
		hit = 1 + n.rng.IntN(2)
	}
	if err := n.c.Kill(id); err != nil {
		return err
	}
	spec := fmt.Sprintf("RAFTQ_FAILPOINTS=%s=crash@%d", pt, hit)
	if err := n.c.Start(ctx, id, spec); err != nil && !errors.Is(err, ErrExited) {
		return err
	}
	// The wait for the crash ends with the run, not the fault: a node left
	// running with a failpoint armed would crash later, during the checks,
	// so a node that did not crash is restarted clean.
	if n.crashes(id, 3*n.hold) {
		n.stats.CrashesAtPt++
		n.lg.Info("crashed at failpoint", zap.Uint64("node", id), zap.String("point", pt), zap.Int("hit", hit))
	} else {
		n.lg.Info("failpoint not reached", zap.Uint64("node", id), zap.String("point", pt), zap.Int("hit", hit))
		if err := n.c.Kill(id); err != nil {
			return err
		}
	}
	return n.c.Start(ctx, id)
}

// crashes reports whether node id's process ends within d (or before the
// run ends).
func (n *nemesis) crashes(id uint64, d time.Duration) bool {
	select {
	case <-n.c.Exited(id):
		return true
	case <-n.ended:
	case <-time.After(d):
	}
	select {
	case <-n.c.Exited(id):
		return true
	default:
		return false
	}
}

// churn changes the membership through the API while traffic runs: with
// three members or fewer it adds a node under a fresh id with an empty
// data dir (it joins and catches up, by snapshot once the log is
// compacted); with more it removes one, the leader half the time, and
// requires the removed process to exit 0 by itself.
func (n *nemesis) churn(ctx context.Context) error {
	lead, err := n.leader(ctx)
	if err != nil {
		return err
	}
	members := n.c.Members()
	if len(members) <= 3 {
		nd, err := n.c.NewNode()
		if err != nil {
			return err
		}
		body := fmt.Sprintf(`{"id":%d,"peer_url":%q}`, nd.ID, nd.PeerURL())
		toLeader := func() string {
			if l := n.c.Leader(ctx); l != 0 {
				return n.c.Node(l).API
			}
			return n.c.Node(lead).API
		}
		if ok, answer := n.change(ctx, http.MethodPost, toLeader, "/mgmt/nodes", body, http.StatusCreated, http.StatusConflict); !ok {
			n.problem("adding node %d: %s", nd.ID, answer)
			n.c.MarkRemoved(nd.ID)
			return nil
		}
		n.lg.Info("member added", zap.Uint64("node", nd.ID))
		if err := n.c.Start(ctx, nd.ID); err != nil {
			n.problem("starting added node %d: %v", nd.ID, err)
			return nil
		}
		n.wait(n.hold)
		return nil
	}
	victim := lead
	if n.rng.IntN(2) == 0 {
		if victim, err = n.follower(ctx); err != nil {
			return err
		}
	} else {
		n.markLeaderFault()
	}
	var via string
	for _, m := range members {
		if m.ID != victim {
			via = m.API
			break
		}
	}
	path := fmt.Sprintf("/mgmt/nodes/%d", victim)
	if ok, answer := n.change(ctx, http.MethodDelete, func() string { return via }, path, "", http.StatusOK, http.StatusNotFound); !ok {
		n.problem("removing node %d: %s", victim, answer)
		return nil
	}
	n.c.MarkRemoved(victim)
	n.lg.Info("member removed", zap.Uint64("node", victim))
	code, err := n.c.WaitExit(victim, exitTimeout)
	switch {
	case err != nil:
		n.problem("removed node %d did not exit: %v", victim, err)
		n.c.Kill(victim)
	case code != 0:
		n.problem("removed node %d exited with status %d", victim, code)
	}
	n.wait(n.hold)
	return nil
}

// change asks for a membership change at api()+path until its outcome is
// known. A 503 (the change timed out, no leader, quorum at risk) or no
// answer at all is asked again, for up to memberTimeout: on a busy machine
// a change can outlast the server's request timeout, and a slow answer is
// no fault. A retry after a try that did take effect is answered with
// gone (409: the id is used; 404: no such member), which is success too.
func (n *nemesis) change(ctx context.Context, method string, api func() string, path, body string, ok, gone int) (bool, string) {
	deadline := time.Now().Add(memberTimeout)
	for try := 0; ; try++ {
		status, out := mgmtCall(ctx, method, api()+path, body)
		answer := fmt.Sprintf("%d %s (try %d)", status, strings.TrimSpace(out), try+1)
		switch {
		case status == ok, status == gone && try > 0:
			return true, answer
		case status != 0 && status != http.StatusServiceUnavailable, time.Now().After(deadline):
			return false, answer
		}
		n.lg.Info("membership change not known yet; asking again", zap.String("answer", answer))
		time.Sleep(200 * time.Millisecond)
	}
}

func mgmtCall(ctx context.Context, method, url, body string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
