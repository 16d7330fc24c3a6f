package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallDisk mounts a tmpfs of size bytes on a new dir and unmounts it at
// the end of the test (after the nodes started later are killed: cleanups
// run last first). It skips the test where that cannot be done.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the disk alarm test mounts a size-limited tmpfs: run it as root")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a size-limited tmpfs (%v: %s): the disk alarm test needs one", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func freeSpace(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fill writes a ballast file of n bytes into dir.
func fill(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := f.Write(chunk[:k]); err != nil {
			f.Close()
			t.Fatalf("ballast: %v", err)
		}
		n -= k
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// refusedForSpace reports whether r is the disk alarm's refusal: 507
// naming the alarm.
func refusedForSpace(r response) bool {
	return r.status == http.StatusInsufficientStorage && strings.Contains(string(r.body), `"alarms":[`)
}

func alarmsOf(t *testing.T, p *proc) ([]uint64, bool) {
	var v struct {
		Alarms []uint64 `json:"alarms"`
	}
	status, err := getJSON(p.api+"/mgmt/limits", &v)
	if err != nil || status != http.StatusOK {
		return nil, false
	}
	return v.Alarms, true
}

// One node's disk fills: it raises the replicated alarm, so every node
// refuses enqueues (507) while dequeues go on; with space back the alarm
// clears and enqueues are taken again. No node stops, and nothing
// acknowledged is lost.
func TestDiskAlarmRefusesEnqueuesUntilSpaceReturns(t *testing.T) {
	// The WAL preallocates its 64 MiB segment and the next one: 256 MiB
	// leaves about 120 MiB to fill.
	small := smallDisk(t, 256<<20)
	const minFree = 32 << 20
	c := startClusterOn(t, 3, map[int]string{2: small}, fmt.Sprintf("--min-free-bytes=%d", minFree))
	var acked []string // in FIFO order: all enqueued through node 1, one at a time
	put := func(body string) response {
		t.Helper()
		r, err := do(http.MethodPut, c.procs[0].api+"/queues/jobs", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		if r.status == http.StatusCreated {
			acked = append(acked, body)
		}
		return r
	}
	for i := range 20 {
		if r := put(fmt.Sprint("before-", i)); r.status != http.StatusCreated {
			t.Fatalf("enqueue before the disk filled: %d %s", r.status, r.body)
		}
	}

	ballast := filepath.Join(small, "ballast")
	fill(t, ballast, freeSpace(t, small)-8<<20)
	t.Logf("ballast written: %d MiB free on node 3's disk, alarm below %d MiB", freeSpace(t, small)>>20, minFree>>20)
	deadline := time.Now().Add(60 * time.Second)
	var refusal response
	for i := 0; ; i++ {
		r := put(fmt.Sprint("filling-", i))
		if refusedForSpace(r) {
			refusal = r
			break
		}
		if r.status != http.StatusCreated {
			t.Fatalf("enqueue while the alarm is due: %d %s", r.status, r.body)
		}
		if time.Now().After(deadline) {
			t.Fatal("node 3's disk is full but enqueues are still taken")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if refusal.status != http.StatusInsufficientStorage {
		t.Logf("NOTE: the disk alarm's refusal answered %d, not 507: %s", refusal.status, refusal.body)
	}
	// Every node refuses, and says so in its limits.
	for _, p := range c.procs {
		r, err := do(http.MethodPut, p.api+"/queues/other", "text/plain", strings.NewReader("x"))
		if err != nil || !refusedForSpace(r) {
			t.Fatalf("node %d took an enqueue with the alarm raised: %v %d %s", p.id, err, r.status, r.body)
		}
		r, err = do(http.MethodPost, p.api+"/queues/jobs/batch", "application/json", strings.NewReader(`{"messages":[{"body":"b"}]}`))
		if err != nil || !refusedForSpace(r) {
			t.Fatalf("node %d took a batch with the alarm raised: %v %d %s", p.id, err, r.status, r.body)
		}
		if alarms, ok := alarmsOf(t, p); ok && !slices.Equal(alarms, []uint64{3}) {
			t.Errorf("node %d lists alarms %v, want [3]", p.id, alarms)
		}
	}
	// Dequeues go on, on every node, in FIFO order.
	for i := range 6 {
		p := c.procs[i%3]
		body, _, found, err := dequeue(p, "jobs")
		if err != nil || !found || body != acked[0] {
			t.Fatalf("dequeue on node %d with the alarm raised: %q %v %v, want %q", p.id, body, found, err, acked[0])
		}
		acked = acked[1:]
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		r := put(fmt.Sprint("after-", i))
		if r.status == http.StatusCreated {
			break
		}
		if !refusedForSpace(r) {
			t.Fatalf("enqueue once space is back: %d %s", r.status, r.body)
		}
		if time.Now().After(deadline) {
			t.Fatal("space is back on node 3 but the alarm did not clear")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range c.procs {
		if alarms, ok := alarmsOf(t, p); ok && len(alarms) != 0 {
			t.Errorf("node %d lists alarms %v after the clear", p.id, alarms)
		}
		if !p.running() {
			t.Fatalf("node %d stopped", p.id)
		}
	}
	if got := drain(t, c.procs[2], "jobs"); !slices.Equal(got, acked) {
		t.Fatalf("drained %d messages, want the %d acknowledged and not taken:\ngot  %q\nwant %q", len(got), len(acked), got, acked)
	}
	logb, _ := os.ReadFile(c.procs[2].logPath)
	for _, s := range []string{"disk space alarm raised", "disk space alarm cleared"} {
		if n := bytes.Count(logb, []byte(s)); n != 1 {
			t.Errorf("node 3 logged %q %d times, want once", s, n)
		}
	}
}

// A member that raised its alarm and went down cannot clear it: the
// operator does, with DELETE /mgmt/alarms/{id}, and enqueues are taken
// again. (No small disk needed: a --min-free-bytes past any disk's free
// space raises the alarm at once.)
func TestOperatorClearsADownMembersAlarm(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, "--min-free-bytes=1000000000000000000")
	waitFor(t, func() bool { a, ok := alarmsOf(t, c.procs[0]); return ok && slices.Equal(a, []uint64{1, 2, 3}) }, "three alarms")
	for i := range c.procs {
		c.kill(i)
	}
	c.flags = []string{"--min-free-bytes=0"} // nodes 1 and 2 clear theirs; node 3 stays down
	c.start(0)
	c.start(1)
	waitFor(t, func() bool { a, ok := alarmsOf(t, c.procs[0]); return ok && slices.Equal(a, []uint64{3}) }, "nodes 1 and 2 clearing their alarms")
	if r, _ := do(http.MethodPut, c.procs[1].api+"/queues/q", "text/plain", strings.NewReader("m")); !refusedForSpace(r) {
		t.Fatalf("enqueue with node 3's alarm raised: %d %s", r.status, r.body)
	}
	r := mgmt(t, http.MethodDelete, c.procs[1].api+"/mgmt/alarms/3", "")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"alarms":[]`) {
		t.Fatalf("clear node 3's alarm: %d %s", r.status, r.body)
	}
	mustEnqueue(t, c.procs[0], "q", "m")
	if r := mgmt(t, http.MethodDelete, c.procs[0].api+"/mgmt/alarms/3", ""); r.status != http.StatusOK {
		t.Fatalf("clearing it again: %d %s", r.status, r.body)
	}
	if r := mgmt(t, http.MethodDelete, c.procs[0].api+"/mgmt/alarms/70000", ""); r.status != http.StatusBadRequest {
		t.Fatalf("an id past any node's: %d %s", r.status, r.body)
	}
}
