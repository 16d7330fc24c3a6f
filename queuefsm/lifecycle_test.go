package queuefsm

import (
	"bytes"
	"container/heap"
	"math"
	"reflect"
	"slices"
	"testing"
)

// A queue deleted and made again never repeats an id of its earlier life,
// nor does any queue made after the delete; a lease token of the deleted
// queue holds nothing in the new one; the floor survives a snapshot.
func TestDeleteAndReuseGiveFreshIDs(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 1, DeadLetterQueue: "d"})
	c.must(batchOf("q", 5, "x"))
	l := c.lease(1000, "q", 100000)
	c.must(Command{Op: OpDeleteQueue, Queue: "q"})
	if r := c.must(put("q", "again")).(EnqueueResult); r.ID != 6 {
		t.Fatalf("first id of the new q = %d, want 6", r.ID)
	}
	if r := c.at(1000, Command{Op: OpAck, Queue: "q", ID: l.Message.ID, Token: l.Token}); !errIs(r, ErrNoMessage) {
		t.Fatalf("ack with a token of the deleted queue = %v", r)
	}
	if r := c.must(put("other", "x")).(EnqueueResult); r.ID != 6 {
		t.Fatalf("a queue made after the delete starts at %d, want 6", r.ID)
	}
	c.must(Command{Op: OpDeleteQueue, Queue: "q"})
	snap, _ := c.f.Snapshot()
	r := newClock(t)
	if err := r.f.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*clockFSM{c, r} {
		if res := f.must(put("q", "x")).(EnqueueResult); res.ID != 7 || f.f.idFloor != 6 {
			t.Fatalf("q made a third time starts at %d (floor %d), want 7", res.ID, f.f.idFloor)
		}
	}
}

// A purge drops the ready and delayed messages and keeps the leased: they
// can be acked or extended, a released or expired one comes back; nothing
// dropped ever comes back.
func TestPurgeWithLeases(t *testing.T) {
	c := newClock(t)
	c.must(batchOf("q", 4, "x"))
	c.must(Command{Op: OpEnqueue, Queue: "q", Delay: 500, Body: []byte("later")})
	a, b := c.lease(1000, "q", 300), c.lease(1000, "q", 300)
	c.must(Command{Op: OpExtend, Queue: "q", ID: b.Message.ID, Token: b.Token, TTL: 300}) // two timers at one time
	snap, _ := c.f.Snapshot()
	write := c.f.Capture()
	if r := c.must(Command{Op: OpPurge, Queue: "q"}).(PurgeResult); r.Dropped != 3 {
		t.Fatalf("purge = %+v", r)
	}
	var got bytes.Buffer
	if err := write(&got); err != nil || !bytes.Equal(got.Bytes(), snap) {
		t.Fatal("the purge changed what a capture taken before it writes")
	}
	if s, _ := c.f.Stats("q"); s.Depth != 0 || s.Leased != 2 || s.Delayed != 0 || s.Totals.Purged != 3 {
		t.Fatalf("after the purge: %+v", s)
	}
	c.must(Command{Op: OpAck, Queue: "q", ID: a.Message.ID, Token: a.Token})
	c.must(Command{Op: OpExtend, Queue: "q", ID: b.Message.ID, Token: b.Token, TTL: 300})
	if r := c.lease(1200, "q", 300); r.Found {
		t.Fatalf("a purged message came back: %+v", r)
	}
	r := c.lease(1400, "q", 300) // b's lease has ended, the delay too
	if !r.Found || r.Message.ID != b.Message.ID {
		t.Fatalf("after b's lease = %+v", r)
	}
	c.must(Command{Op: OpAck, Queue: "q", ID: r.Message.ID, Token: r.Token, Time: 1400})
	if r := c.lease(2000, "q", 300); r.Found {
		t.Fatalf("a purged message came back: %+v", r)
	}
	checkCounts(t, c.f)
}

// Peek lists what takes would find, in their order, and changes nothing:
// not leased or delayed messages, released ones in their old place, due
// leases and delays as ready.
func TestPeek(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 1, DeadLetterQueue: "d"})
	c.at(1000, Command{Op: OpEnqueue, Queue: "q", ContentType: "text/plain", Body: []byte("1")})
	c.at(2500, put("q", "2"))
	c.at(3000, put("q", "3"))
	c.at(3000, Command{Op: OpEnqueue, Queue: "q", Delay: 2000, Body: []byte("4")})
	c.at(3000, put("q", "5"))
	l1 := c.lease(3000, "q", 1000)
	l2 := c.lease(3000, "q", 60000)
	c.must(Command{Op: OpRelease, Queue: "q", ID: l1.Message.ID, Token: l1.Token, Time: 3000})
	ids := func(ps []Message) (out []uint64) {
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	before, _ := c.f.Snapshot()
	ps, err := c.f.Peek("q", 10)
	if after, _ := c.f.Snapshot(); !bytes.Equal(before, after) {
		t.Fatal("Peek changed the state")
	}
	want := Message{ID: 1, ContentType: "text/plain", Body: "1", Deliveries: 1, Enqueued: 1000}
	if err != nil || !reflect.DeepEqual(ids(ps), []uint64{1, 3, 5}) || !reflect.DeepEqual(ps[0], want) || ps[1].Enqueued != 3000 {
		t.Fatalf("peek = %+v %v", ps, err)
	}
	if ps, _ := c.f.Peek("q", 2); !reflect.DeepEqual(ids(ps), []uint64{1, 3}) {
		t.Fatalf("peek 2 = %v", ids(ps))
	}
	c.at(6000, put("other", "x")) // the clock passes the delay of 4; no command on q
	if ps, _ := c.f.Peek("q", 10); !reflect.DeepEqual(ids(ps), []uint64{1, 3, 4, 5}) {
		t.Fatalf("peek with a delay due = %v", ids(ps))
	}
	c.at(70000, Command{Op: OpTick}) // l2's lease ends (the clock steps MaxClockStep)
	if ps, _ := c.f.Peek("q", 3); !reflect.DeepEqual(ids(ps), []uint64{1, 2, 3}) || ps[1].Enqueued != 2000 {
		t.Fatalf("peek after a lease ended = %+v (%v)", ps, l2.Message.ID)
	}
	c.lease(70000, "q", 10) // moves 1 and 2 to d, leases 3
	if ps, _ := c.f.Peek("d", 10); len(ps) != 2 || *ps[0].Origin != (Origin{Queue: "q", ID: 1, Deliveries: 1}) || ps[0].ID != 1 || ps[0].Enqueued != 70000 {
		t.Fatalf("peek of dead letters = %+v", ps)
	}
	for _, tc := range []struct {
		queue string
		max   int
		want  error
	}{{"q", 0, ErrInvalidArg}, {"q", MaxPeek + 1, ErrInvalidArg}, {"none", 1, ErrNoQueue}, {"..", 1, ErrInvalidName}} {
		if _, err := c.f.Peek(tc.queue, tc.max); !errIs(err, tc.want) {
			t.Errorf("Peek(%q, %d) = %v, want %v", tc.queue, tc.max, err, tc.want)
		}
	}
}

// Ready messages scattered among many leases: the table walk gives up
// and the heap gives the answer.
func TestPeekAmongLeases(t *testing.T) {
	c := newClock(t)
	c.must(batchOf("q", 300, "x"))
	var ls []DequeueResult
	for range 300 {
		ls = append(ls, c.lease(1000, "q", 10000))
	}
	for _, i := range []int{99, 199, 299} {
		c.must(Command{Op: OpRelease, Queue: "q", ID: ls[i].Message.ID, Token: ls[i].Token})
	}
	q := c.f.queues["q"]
	if _, ok := q.peekTable(c.f.now, 2); ok {
		t.Fatal("the table walk skipped 200 leases for 2 messages")
	}
	if _, ok := q.peekTable(c.f.now, 1); !ok {
		t.Fatal("the table walk gave up on 1 message behind no lease (it starts at the oldest ready)")
	}
	ps, err := c.f.Peek("q", 10)
	if err != nil || len(ps) != 3 || ps[0].ID != 100 || ps[1].ID != 200 || ps[2].ID != 300 {
		t.Fatalf("peek = %+v %v", ps, err)
	}
	checkPeek(t, c.f)
}

// ascending yields a heap's ids in order, any prefix of them, without
// changing the heap.
func TestHeapAscending(t *testing.T) {
	w := newWorkload(5)
	for n := range 200 {
		var h idHeap
		for range n {
			heap.Push(&h, uint64(w.rng.IntN(1000)))
		}
		before := append(idHeap(nil), h...)
		want := append([]uint64(nil), h...)
		slices.Sort(want)
		var got []uint64
		for id := range h.ascending {
			got = append(got, id)
			if len(got) == n/2+1 {
				break
			}
		}
		if k := min(n, n/2+1); !reflect.DeepEqual(got, want[:k]) || !reflect.DeepEqual(before, h) {
			t.Fatalf("n %d: got %v, want %v", n, got, want[:k])
		}
	}
}

func TestStats(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 2, DeadLetterQueue: "d", MaxMessages: 100, MaxBytes: 1 << 20})
	c.at(5000, Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "k", Body: []byte("abc")})
	c.at(6000, batchOf("q", 3, "x"))
	c.at(6000, Command{Op: OpEnqueue, Queue: "q", Delay: 5000})
	l := c.lease(7000, "q", 500)
	c.must(Command{Op: OpAck, Queue: "q", ID: l.Message.ID, Token: l.Token, Time: 7000})
	c.lease(7000, "q", 500)
	c.must(Command{Op: OpDequeue, Queue: "q", Time: 7000})
	c.at(7400, put("other", "x"))
	want := QueueStats{Depth: 1, Leased: 1, Delayed: 1, Bytes: 2*MessageCost("", 1) + MessageCost("", 0) + KeyCost("k"),
		Keys: 1, OldestReady: 6000, Now: 7400,
		Config: QueueConfig{MaxDeliveries: 2, DeadLetterQueue: "d", MaxMessages: 100, MaxBytes: 1 << 20, Created: 1000, Modified: 1000},
		Totals: QueueTotals{Enqueued: 5, Popped: 1, Acked: 1}}
	if s, err := c.f.Stats("q"); err != nil || s != want {
		t.Fatalf("stats\n%+v %v, want\n%+v", s, err, want)
	}
	c.at(7600, put("other", "y")) // the lease is due, not yet acted on
	want.Depth, want.Leased, want.Now = 2, 0, 7600
	if s, _ := c.f.Stats("q"); s != want {
		t.Fatalf("stats with timers due\n%+v, want\n%+v", s, want)
	}
	if _, err := c.f.Stats("none"); !errIs(err, ErrNoQueue) {
		t.Fatalf("stats of an unknown queue: %v", err)
	}
	if s, _ := c.f.Stats("d"); s != (QueueStats{Now: 7600, Config: QueueConfig{Created: 1000, Modified: 1000}}) {
		t.Fatalf("stats of the new dead-letter queue: %+v", s)
	}
}

// gen is kept in 32 bits: when it wraps, records stamped 0 long ago are
// copied, or a change would reach them through the capture just taken.
func TestGenWrap(t *testing.T) {
	c := newClock(t)
	c.must(batchOf("q", 10, "x")) // stamped gen 0
	c.f.gen = math.MaxUint32
	want, _ := c.f.Snapshot()
	write := c.f.Capture() // gen wraps to 0
	if c.f.gen != 0 {
		t.Fatalf("gen %d", c.f.gen)
	}
	for range 5 {
		c.lease(1000, "q", 100)
	}
	var got bytes.Buffer
	if err := write(&got); err != nil || !bytes.Equal(got.Bytes(), want) {
		t.Fatal("a lease after gen wrapped changed a captured record")
	}
}

// A snapshot of version 3 restores with the default limits, no alarm,
// totals from the messages held, the snapshot's clock as enqueue time and
// every byte counted; version 5 is written byte for byte, and the checks of
// version 4's new fields still apply to what it restores.
func TestSnapshotFormat(t *testing.T) {
	v3 := []byte{snapshotV3, 0xa0, 0x1f, 0, // now 2000, no proposers
		1, 1, 'q', 2, 0, 0, // queue q: last id 2, no max deliveries, no dead letters
		1, 2, 0, 1, 'x', 0, 0, 0, 0, 0, // message 2 "x", ready, no origin
		1, 1, 'k', 2} // key k → message 2 …
	v3 = append(v3, make([]byte, 32)...)
	v3 = append(v3, 0xa0, 0x1f) // … stored at 2000
	f := New()
	if err := f.Restore(v3); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, f)
	l := f.Limits()
	s, _ := f.Stats("q")
	if l.MaxQueues != DefaultMaxQueues || l.MaxBytes != DefaultMaxBytes || l.Alarms != nil || l.Bytes != MessageCost("", 1)+KeyCost("k") ||
		s.Totals != (QueueTotals{Enqueued: 1}) || s.OldestReady != 2000 {
		t.Fatalf("from version 3: limits %+v, stats %+v", l, s)
	}

	c := newClock(t)
	c.at(2000, Command{Op: OpSetLimits, MaxQueues: 5, MaxBytes: 1000})
	c.at(2000, Command{Op: OpAlarm, Node: 2, Raise: true})
	c.at(2000, Command{Op: OpAlarm, Node: 2})
	c.f.Apply(9, encodeV2ForTest(t, Command{Op: OpEnqueue, Time: 2000, Queue: "old", Body: []byte("a")}))
	c.at(2000, Command{Op: OpDeleteQueue, Queue: "old"})
	c.at(2000, put("q", "x"))
	c.at(2000, Command{Op: OpConfigure, Queue: "q", MaxMessages: 3})
	c.at(2000, Command{Op: OpAlarm, Node: 7, Raise: true})
	want := []byte{snapshotVersion, 0xa0, 0x1f, 0, // now 2000, no proposers
		10, 0xd0, 0x0f, 1, 1, 7, // max_queues 5, max_bytes 1000, idFloor 1, alarm of node 7
		1, 1, 'q', 2, 0, 0, 6, 0, // queue q: last id 2, no max deliveries, no dead letters, max_messages 3, no max_bytes
		1, 0, 0, 0, 0, 0, // totals: 1 enqueued
		0, 0, 0, 0, 0, 0, 0xa0, 0x1f, 0xa0, 0x1f, // no settings, created and modified at 2000
		1, 2, 0, 1, 'x', 0, 0, 0, 0, 2, 0, 0, 0, // message 2 "x", ready, enqueued at 2 s, no group, no attributes, no origin
		0} // no keys
	got, _ := c.f.Snapshot()
	if !bytes.Equal(got, want) {
		t.Fatalf("snapshot\n% x, want\n% x", got, want)
	}
	for name, data := range map[string][]byte{
		"negative limit":       {snapshotV4, 0, 0, 1, 0, 0, 0, 0},
		"alarm of node 0":      {snapshotV4, 0, 0, 0, 0, 0, 1, 0, 0},
		"alarms unsorted":      {snapshotV4, 0, 0, 0, 0, 0, 2, 3, 2, 0},
		"negative queue limit": {snapshotV4, 0, 0, 0, 0, 0, 0, 1, 1, 'q', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		"queue twice":          append(append([]byte{snapshotV4, 0, 0, 0, 0, 0, 0, 2}, emptyQueue...), emptyQueue...),
		"enqueue time too big": {snapshotV4, 0, 0, 0, 0, 0, 0, 1, 1, 'q', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
			1, 1, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0},
	} {
		if err := New().Restore(data); !errIs(err, ErrBadSnapshot) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := New().Restore(append([]byte{snapshotV4, 0, 0, 0, 0, 0, 0, 1}, emptyQueue...)); err != nil {
		t.Fatalf("the bad cases' base: %v", err)
	}
}

var emptyQueue = []byte{1, 'q', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// BenchmarkPeek1000: Peek of 1000 costs the same whatever is behind them,
// or ahead of them leased: it walks the ready heap from its root.
func BenchmarkPeek1000(b *testing.B) {
	for _, tc := range []struct {
		name          string
		queued, lease int
	}{{"10k", 10_000, 0}, {"1M", 1_000_000, 0}, {"1M-999k-leased-ahead", 1_000_000, 999_000}} {
		b.Run(tc.name, func(b *testing.B) {
			f := filled(b, tc.queued)
			for i := 0; i < tc.lease; i += MaxBatch {
				for j := range MaxBatch {
					f.Apply(uint64(10_000_000+i+j), Command{Op: OpLease, Time: 1700000000000, Queue: "jobs", TTL: 1 << 40}.Encode())
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if ps, err := f.Peek("jobs", 1000); err != nil || len(ps) != 1000 {
					b.Fatal(len(ps), err)
				}
			}
		})
	}
}

// BenchmarkPurge1M: a purge of a million ready messages costs what the
// leased ones number, here 1000.
func BenchmarkPurge1M(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		f := filled(b, 1_000_000)
		for j := range 1000 {
			f.Apply(uint64(10_000_000+j), Command{Op: OpLease, Time: 1700000000000, Queue: "jobs", TTL: 1 << 40}.Encode())
		}
		b.StartTimer()
		if r := f.Apply(20_000_000, Command{Op: OpPurge, Time: 1700000000000, Queue: "jobs"}.Encode()); r != (PurgeResult{Dropped: 999_000}) {
			b.Fatal(r)
		}
	}
}

// filled is a queue of n 256-byte messages, in batches.
func filled(b *testing.B, n int) *FSM {
	f := New()
	f.Apply(0, Command{Op: OpSetLimits}.Encode())
	items := make([]BatchItem, MaxBatch)
	for i := range items {
		items[i] = BatchItem{Body: string(body256)}
	}
	batch := Command{Op: OpBatch, Time: 1700000000000, Queue: "jobs", Items: items}.Encode()
	for i := range n / MaxBatch {
		if r := f.Apply(uint64(i+1), batch); asErr(r) != nil {
			b.Fatal(r)
		}
	}
	return f
}

// Counts agrees with Stats for every queue while nothing is due.
func TestCountsMatchStats(t *testing.T) {
	c := newClock(t)
	for i := range 5 {
		c.at(1000, Command{Op: OpEnqueue, Queue: "a", Body: []byte("x")})
		if i < 2 {
			c.at(1000, Command{Op: OpEnqueue, Queue: "b", Body: []byte("yy"), Delay: 60_000})
		}
	}
	c.at(1000, Command{Op: OpLease, Queue: "a", TTL: 60_000})
	c.at(1000, Command{Op: OpDequeue, Queue: "a"})
	counts := c.f.Counts()
	if len(counts) != 2 {
		t.Fatalf("%d queues counted", len(counts))
	}
	for _, qc := range counts {
		st, err := c.f.Stats(qc.Name)
		if err != nil || qc.Depth != st.Depth || qc.Leased != st.Leased || qc.Delayed != st.Delayed || qc.Bytes != st.Bytes || qc.Totals != st.Totals {
			t.Errorf("%s: counts %+v, stats %+v (%v)", qc.Name, qc, st, err)
		}
	}
}
