package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
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
	return n.c.WaitLeader(ctx, 20*time.Second)
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

func (n *nemesis) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (n *nemesis) markLeaderFault() {
	n.stats.LeaderFaults = append(n.stats.LeaderFaults, n.h.Since())
}

// inject runs one fault from start to heal.
func (n *nemesis) inject(ctx context.Context, fault string) error {
	n.stats.Faults[fault]++
	n.lg.Info("fault", zap.String("name", fault))
	switch fault {
	case KillLeader, KillFollower:
		return n.onNode(ctx, fault == KillLeader, n.c.Kill, func(id uint64) error { return n.c.Start(ctx, id) })
	case PauseLeader, PauseFollower:
		return n.onNode(ctx, fault == PauseLeader, n.c.Pause, n.c.Resume)
	case IsolateLeader, IsolateNode:
		return n.onNode(ctx, fault == IsolateLeader, func(id uint64) error {
			n.isolate(id)
			if fault == IsolateLeader {
				n.checkStepsDown(ctx, id)
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
		n.sleep(ctx, n.hold)
		n.c.Net.Heal()
		return nil
	case OneWay:
		ids := n.ids()
		n.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		n.c.Net.Set(Link{ids[0], ids[1]}, LinkRule{Cut: true})
		n.lg.Info("one-way cut", zap.Uint64("from", ids[0]), zap.Uint64("to", ids[1]))
		n.sleep(ctx, n.hold)
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
		n.sleep(ctx, n.hold)
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
	n.sleep(ctx, n.hold)
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

// checkStepsDown proves the partition cuts traffic: an isolated leader
// must notice (CheckQuorum) and stop leading within a few election timeouts.
func (n *nemesis) checkStepsDown(ctx context.Context, id uint64) {
	deadline := time.Now().Add(5 * n.c.cfg.ElectionTimeout())
	for time.Now().Before(deadline) {
		if st, err := n.c.State(ctx, id); err == nil && st.Leader != id {
			return
		}
		n.sleep(ctx, 20*time.Millisecond)
	}
	n.problem("isolated leader %d still leads after %v", id, 5*n.c.cfg.ElectionTimeout())
}

// crashPoint restarts a node with one failpoint armed, waits for it to
// crash there (or the hold to pass), and restarts it clean.
func (n *nemesis) crashPoint(ctx context.Context) error {
	id, err := n.pick(ctx, n.rng.IntN(2) == 0)
	if err != nil {
		return err
	}
	// Seen through even if the run ends meanwhile: a node left running
	// with a failpoint armed would crash later, during the checks.
	ctx = context.WithoutCancel(ctx)
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
	if _, err := n.c.WaitExit(id, 3*n.hold); err == nil {
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

// lastFile is the newest file with ext in node id's data subdir.
// readLast reads the newest file with ext in dir, and where its data ends.
func readLast(dir, ext string) (path string, b []byte, end int, err error) {
	if path, err = lastFile(dir, ext); err != nil {
		return "", nil, 0, err
	}
	if b, err = os.ReadFile(path); err != nil {
		return "", nil, 0, err
	}
	return path, b, dataEnd(b), nil
}

func lastFile(dir, ext string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil || len(m) == 0 {
		return "", fmt.Errorf("chaos: no %s file in %s", ext, dir)
	}
	sort.Strings(m)
	return m[len(m)-1], nil
}

// dataEnd is the offset just past the last nonzero byte (WAL files are
// preallocated with zeros).
func dataEnd(b []byte) int {
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return end
}

// tornTail cuts the end of a follower's last WAL record, as a power loss
// in the middle of a write would, and requires it to repair and rejoin.
// A write can only be torn if it never completed, so it was never
// acknowledged: to keep that true, the follower's outgoing links are cut
// first (it goes on receiving and writing entries, but no ack leaves), and
// it is killed while they are cut. Tearing an acknowledged record would
// be a lost fsync, which raft cannot survive (tocommit out of range).
func (n *nemesis) tornTail(ctx context.Context) error {
	id, err := n.follower(ctx)
	if err != nil {
		return err
	}
	for _, o := range n.ids() {
		if o != id {
			n.c.Net.Set(Link{id, o}, LinkRule{Cut: true})
		}
	}
	n.sleep(ctx, 300*time.Millisecond)
	if err := n.c.Kill(id); err != nil {
		return err
	}
	n.c.Net.Heal()
	path, _, end, err := readLast(filepath.Join(n.c.Node(id).DataDir, "wal"), ".wal")
	if err != nil {
		return err
	}
	cut := 1 + n.rng.IntN(min(12, end))
	if err := os.Truncate(path, int64(end-cut)); err != nil {
		return err
	}
	n.lg.Info("tore WAL tail", zap.Uint64("node", id), zap.String("file", filepath.Base(path)), zap.Int("bytes", cut))
	if err := n.c.Start(ctx, id); err != nil {
		if ctx.Err() == nil { // else the run ended; healing restarts it
			n.problem("node %d did not restart after a torn WAL tail: %v", id, err)
		}
		return nil
	}
	if logHas(n.c.Node(id).LogPath, "repaired torn WAL tail") {
		n.stats.Repairs++
	}
	n.sleep(ctx, n.hold)
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logHasSince reports whether s appears in path after offset from.
func logHasSince(path string, from int64, s string) bool {
	b, _ := os.ReadFile(path)
	if from > int64(len(b)) {
		return false
	}
	return strings.Contains(string(b[from:]), s)
}

func logHas(path, s string) bool {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), s)
}

// corrupt kills a follower and flips one bit inside the data of a WAL
// segment or the newest snapshot. A damaged WAL must make the node refuse
// to start; a damaged snapshot may instead be skipped for an older one the
// WAL also names (the final state comparison then proves it harmless).
// Then the original files are put back, as an operator restoring the disk
// would, and the node restarts.
func (n *nemesis) corrupt(ctx context.Context, sub, ext string) error {
	id, err := n.follower(ctx)
	if err != nil {
		return err
	}
	if err := n.c.Kill(id); err != nil {
		return err
	}
	nd := n.c.Node(id)
	dir := filepath.Join(nd.DataDir, sub)
	backup := dir + ".bak"
	os.RemoveAll(backup)
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
		return fmt.Errorf("chaos: back up %s: %w", dir, err)
	}
	path, b, end, err := readLast(dir, ext)
	if err != nil {
		return err
	}
	// The middle of the data, clear of the file header and the last record.
	off := end/4 + n.rng.IntN(max(1, end/2))
	if sub == "wal" {
		off = n.walByte(b, off)
	}
	b[off] ^= 1 << n.rng.IntN(8)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	n.lg.Info("flipped a bit", zap.Uint64("node", id), zap.String("file", filepath.Base(path)), zap.Int("offset", off))
	logStart := fileSize(nd.LogPath)
	startErr := n.c.Start(ctx, id)
	switch {
	case startErr != nil && errors.Is(startErr, ErrExited):
		n.stats.Refusals++
	case startErr != nil:
		return startErr
	case sub == "wal" && logHasSince(nd.LogPath, logStart, "repaired torn WAL tail"):
		// Damage before intact records was cut off as if it were a torn
		// tail: acknowledged entries lost.
		n.problem("node %d repaired away a bit flipped at offset %d of %s", id, off, filepath.Base(path))
		n.c.Kill(id)
	case sub == "wal":
		// The WAL still decoded whole: the bit was one no reader uses
		// (say, above 32 bits in a CRC's varint). Harmless.
		n.stats.HarmlessFlips++
		n.c.Kill(id)
	default:
		n.stats.SnapFallbacks++
		n.c.Kill(id)
	}
	os.RemoveAll(dir)
	if err := os.Rename(backup, dir); err != nil {
		return fmt.Errorf("chaos: restore %s: %w", dir, err)
	}
	for _, f := range mustGlob(filepath.Join(dir, "*.broken")) {
		os.Remove(f)
	}
	n.sleep(ctx, n.hold/2)
	return n.c.Start(ctx, id)
}

func mustGlob(p string) []string {
	m, _ := filepath.Glob(p)
	return m
}

// walByte moves off to a byte the WAL's CRCs or framing cover: in the
// frame holding off, its length's low 7 bytes or its record, never its
// padding (etcd pads frames to 8 bytes, and a flipped padding bit is
// rightly harmless).
func (n *nemesis) walByte(b []byte, off int) int {
	for pos := 0; pos+8 <= len(b); {
		lenField := int64(binary.LittleEndian.Uint64(b[pos:]))
		recBytes := int(uint64(lenField) &^ (uint64(0xff) << 56))
		pad := 0
		if lenField < 0 {
			pad = int((uint64(lenField) >> 56) & 0x7)
		}
		next := pos + 8 + recBytes + pad
		if lenField == 0 || next > len(b) {
			return off
		}
		if off < next {
			// Skip the length's top byte: etcd reads only its top bit and
			// low 3 bits (the padding), so a flip there can be harmless.
			k := n.rng.IntN(7 + recBytes)
			if k >= 7 {
				k++
			}
			return pos + k
		}
		pos = next
	}
	return off
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
	// A change, once asked for, is seen through even if the run ends
	// meanwhile: its outcome must be known to heal and check the cluster.
	ctx = context.WithoutCancel(ctx)
	members := n.c.Members()
	api := n.c.Node(lead).API
	if len(members) <= 3 {
		nd, err := n.c.NewNode()
		if err != nil {
			return err
		}
		body := fmt.Sprintf(`{"id":%d,"peer_url":%q}`, nd.ID, nd.PeerURL())
		if status, out := mgmtCall(ctx, http.MethodPost, api+"/mgmt/nodes", body); status != http.StatusCreated {
			n.problem("adding node %d: %d %s", nd.ID, status, out)
			n.c.MarkRemoved(nd.ID)
			return nil
		}
		n.lg.Info("member added", zap.Uint64("node", nd.ID))
		if err := n.c.Start(ctx, nd.ID); err != nil {
			if ctx.Err() == nil { // else the run ended; healing starts it
				n.problem("starting added node %d: %v", nd.ID, err)
			}
			return nil
		}
		n.sleep(ctx, n.hold)
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
	if status, out := mgmtCall(ctx, http.MethodDelete, fmt.Sprintf("%s/mgmt/nodes/%d", via, victim), ""); status != http.StatusOK {
		n.problem("removing node %d: %d %s", victim, status, out)
		return nil
	}
	n.c.MarkRemoved(victim)
	n.lg.Info("member removed", zap.Uint64("node", victim))
	code, err := n.c.WaitExit(victim, 20*time.Second)
	switch {
	case err != nil:
		n.problem("removed node %d did not exit: %v", victim, err)
		n.c.Kill(victim)
	case code != 0:
		n.problem("removed node %d exited with status %d", victim, code)
	}
	n.sleep(ctx, n.hold)
	return nil
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
