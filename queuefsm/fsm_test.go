package queuefsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func enqueue(t *testing.T, f *FSM, q, body string) uint64 {
	t.Helper()
	res, ok := f.Apply(0, EncodeEnqueue(q, "text/plain", []byte(body))).(EnqueueResult)
	if !ok {
		t.Fatalf("enqueue %s: unexpected result %#v", q, res)
	}
	return res.ID
}

func dequeue(t *testing.T, f *FSM, q string) DequeueResult {
	t.Helper()
	res, ok := f.Apply(0, EncodeDequeue(q)).(DequeueResult)
	if !ok {
		t.Fatalf("dequeue %s: unexpected result %#v", q, res)
	}
	return res
}

func TestFIFOAndIDs(t *testing.T) {
	f := New()
	for i := 1; i <= 5; i++ {
		if id := enqueue(t, f, "jobs", fmt.Sprint("m", i)); id != uint64(i) {
			t.Fatalf("enqueue %d got id %d", i, id)
		}
	}
	for i := 1; i <= 5; i++ {
		r := dequeue(t, f, "jobs")
		if !r.Found || r.Message.ID != uint64(i) || string(r.Message.Body) != fmt.Sprint("m", i) {
			t.Fatalf("dequeue %d got %+v", i, r)
		}
		if r.Message.ContentType != "text/plain" {
			t.Fatalf("content type %q", r.Message.ContentType)
		}
	}
	if r := dequeue(t, f, "jobs"); r.Found {
		t.Fatalf("drained queue returned %+v", r)
	}
	// Ids continue after the queue was drained: never reused.
	if id := enqueue(t, f, "jobs", "again"); id != 6 {
		t.Fatalf("id after drain = %d, want 6", id)
	}
}

func TestUnknownQueueIsEmpty(t *testing.T) {
	f := New()
	if r := dequeue(t, f, "nothing"); r.Found {
		t.Fatalf("got %+v", r)
	}
	if qs := f.Queues(); len(qs) != 0 {
		t.Fatalf("dequeue created a queue: %+v", qs)
	}
}

func TestQueuesAreIndependentAndSorted(t *testing.T) {
	f := New()
	enqueue(t, f, "b", "b1")
	enqueue(t, f, "a", "a1")
	enqueue(t, f, "b", "b2")
	enqueue(t, f, "c.d_e-1", "c1")
	if id := enqueue(t, f, "a", "a2"); id != 2 {
		t.Fatalf("queue a id = %d, want 2 (ids are per queue)", id)
	}
	dequeue(t, f, "c.d_e-1")
	got := f.Queues()
	want := []QueueInfo{{Name: "a", Depth: 2}, {Name: "b", Depth: 2}, {Name: "c.d_e-1"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Queues() = %v, want %v", got, want)
	}
	if r := dequeue(t, f, "b"); string(r.Message.Body) != "b1" {
		t.Fatalf("queue b head = %q", r.Message.Body)
	}
}

func TestApplyCopiesBody(t *testing.T) {
	f := New()
	cmd := EncodeEnqueue("q", "", []byte("hello"))
	f.Apply(1, cmd)
	for i := range cmd {
		cmd[i] = 'x'
	}
	if r := dequeue(t, f, "q"); string(r.Message.Body) != "hello" {
		t.Fatalf("stored body changed with the command buffer: %q", r.Message.Body)
	}
}

func TestBadInput(t *testing.T) {
	f := New()
	long := strings.Repeat("a", MaxQueueNameLen+1)
	for name, cmd := range map[string][]byte{
		"empty":         nil,
		"version":       {9, byte(OpEnqueue), 1, 'q'},
		"op":            {commandVersion, 9, 0, 0, 0, 1, 'q'},
		"short string":  {commandVersion, byte(OpDequeue), 0, 0, 0, 5, 'q'},
		"no proposer":   {commandVersion, byte(OpTick), 0},
		"dequeue trail": append(EncodeDequeue("q"), 'x'),
	} {
		if err, ok := f.Apply(0, cmd).(error); !ok || !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: got %v, want ErrBadCommand", name, f.Apply(0, cmd))
		}
	}
	for _, name := range []string{"", long, "a/b", "ä", "a b", "q?x"} {
		if err, ok := f.Apply(0, EncodeEnqueue(name, "", nil)).(error); !ok || !errors.Is(err, ErrInvalidName) {
			t.Errorf("name %q: got %v, want ErrInvalidName", name, err)
		}
	}
	if len(f.Queues()) != 0 {
		t.Fatalf("bad input changed state: %v", f.Queues())
	}
	if err := ValidateName(strings.Repeat("Z", MaxQueueNameLen)); err != nil {
		t.Fatalf("longest legal name refused: %v", err)
	}
}

// randomOps feeds the same pseudo-random command stream to every FSM given.
func randomOps(seed uint64, n int, fsms ...*FSM) []any {
	rng := rand.New(rand.NewPCG(seed, seed))
	var results []any
	for i := range n {
		q := fmt.Sprint("q", rng.IntN(4))
		var cmd []byte
		if rng.IntN(3) == 0 {
			cmd = EncodeDequeue(q)
		} else {
			cmd = EncodeEnqueue(q, "application/octet-stream", []byte(fmt.Sprint(i)))
		}
		for _, f := range fsms {
			results = append(results, f.Apply(uint64(i+1), cmd))
		}
	}
	return results
}

func TestDeterminism(t *testing.T) {
	a, b := New(), New()
	results := randomOps(42, 5000, a, b)
	for i := 0; i < len(results); i += 2 {
		if fmt.Sprint(results[i]) != fmt.Sprint(results[i+1]) {
			t.Fatalf("op %d: results differ: %v vs %v", i/2, results[i], results[i+1])
		}
	}
	sa, _ := a.Snapshot()
	sb, _ := b.Snapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatal("snapshots of equal histories differ")
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	a := New()
	randomOps(7, 3000, a)
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b := New()
	enqueue(t, b, "junk", "to be replaced")
	if err := b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	again, _ := b.Snapshot()
	if !bytes.Equal(snap, again) {
		t.Fatal("restored state encodes differently")
	}
	// The restored replica continues exactly like the original.
	ra := randomOps(8, 1000, a)
	rb := randomOps(8, 1000, b)
	if fmt.Sprint(ra) != fmt.Sprint(rb) {
		t.Fatal("restored replica diverged from the original")
	}
}

func TestRestoreRefusesBadSnapshots(t *testing.T) {
	a := New()
	enqueue(t, a, "q", "x")
	good, _ := a.Snapshot()
	b := New()
	enqueue(t, b, "keep", "me")
	before, _ := b.Snapshot()
	for name, data := range map[string][]byte{
		"empty":      nil,
		"version":    append([]byte{99}, good[1:]...),
		"truncated":  good[:len(good)-1],
		"trailing":   append(append([]byte(nil), good...), 0),
		"huge count": {snapshotVersion, 1, 0, 1, 1, 'q', 0, 0xff, 0xff, 0x03},
	} {
		if err := b.Restore(data); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: err = %v, want ErrBadSnapshot", name, err)
		}
	}
	after, _ := b.Snapshot()
	if !bytes.Equal(before, after) {
		t.Fatal("a failed restore changed the state")
	}
}

func TestLongQueueDrains(t *testing.T) {
	f := New()
	const n = 5000
	for i := range n {
		enqueue(t, f, "q", fmt.Sprint(i))
	}
	for i := range n {
		if r := dequeue(t, f, "q"); string(r.Message.Body) != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, r.Message.Body)
		}
		if i == n/2 {
			// Interleave an enqueue to exercise the compaction path mid-stream.
			enqueue(t, f, "other", "x")
		}
	}
	if q := f.queues["q"]; q.msgs.len() != 0 || len(q.ready) != 0 {
		t.Fatalf("drained queue still holds %d messages, %d ready ids", q.msgs.len(), len(q.ready))
	}
}

// "." and ".." are refused as queue names, dead-letter queues included: an
// HTTP router cleans them out of a path, so such a queue could never be
// read. Commands of versions 1 and 2 accepted them, and still do, so that
// an old log replays into the state it gave.
func TestDotNames(t *testing.T) {
	for _, name := range []string{".", ".."} {
		if err := ValidateName(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", name, err)
		}
	}
	for _, name := range []string{"...", ".a", "a.", "a..b", ".-", "_"} {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v", name, err)
		}
	}
	c := newClock(t)
	for _, cmd := range []Command{
		{Op: OpEnqueue, Queue: ".", Body: []byte("x")},
		{Op: OpBatch, Queue: "..", Items: []BatchItem{{Body: "x"}}},
		{Op: OpLease, Queue: "..", TTL: 1000},
		{Op: OpConfigure, Queue: "."},
		{Op: OpConfigure, Queue: "jobs", DeadLetterQueue: ".."},
		{Op: OpConfigure, Queue: "jobs", DeadLetterQueue: "."},
	} {
		if r := c.at(1000, cmd); !errIs(r, ErrInvalidName) {
			t.Errorf("%+v = %v, want ErrInvalidName", cmd, r)
		}
	}
	if qs := c.f.Queues(); len(qs) != 0 {
		t.Fatalf("refused commands made queues: %+v", qs)
	}
	for i, cmd := range []Command{
		{Op: OpEnqueue, Time: 1000, Queue: ".", Body: []byte("x")},
		{Op: OpConfigure, Time: 1000, Queue: "jobs", DeadLetterQueue: ".."},
	} {
		if r := c.f.Apply(uint64(100+i), encodeV2ForTest(t, cmd)); errIs(r, ErrInvalidName) {
			t.Errorf("version 2 %+v = %v", cmd, r)
		}
	}
	if c.f.DeadLetterQueue("jobs") != ".." || c.f.Queues()[0].Name != "." {
		t.Fatalf("version 2 commands: %+v, dead letters to %q", c.f.Queues(), c.f.DeadLetterQueue("jobs"))
	}
}
