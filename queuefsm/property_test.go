package queuefsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// checkCounts recounts what the FSM keeps incrementally and fails on any
// difference: the bytes of every queue and of all, the leased and delayed
// counts, the ready heap (each ready message once, nothing else), the
// keys' FIFO and the totals.
func checkCounts(t testing.TB, f *FSM) {
	t.Helper()
	var all int64
	for name, q := range f.queues {
		var msgBytes, keyBytes int64
		n, leased, delayed := 0, 0, 0
		ready := map[uint64]bool{}
		q.msgs.view(false).each(func(m *msg) {
			n++
			msgBytes += Cost(m.contentType(), len(m.body), m.group(), m.attrs())
			switch m.state {
			case stateLeased:
				leased++
			case stateDelayed:
				delayed++
			default:
				ready[m.id] = true
			}
		})
		for k := range q.keys {
			keyBytes += KeyCost(k)
		}
		live := 0
		for _, k := range q.keyOrder {
			if s, ok := q.keys[k.key]; ok && s.at == k.at {
				live++
			}
		}
		inHeap := map[uint64]bool{}
		for _, id := range q.ready {
			if !ready[id] || inHeap[id] || q.msgs.get(id).group() != "" {
				t.Fatalf("queue %s: ready heap holds %d, which is not ready, or is there twice, or is grouped", name, id)
			}
			inHeap[id] = true
		}
		checkGroups(t, q, ready, inHeap)
		tot := q.totals
		switch {
		case n != q.msgs.len() || leased != q.leasedN || delayed != q.delayedN || len(inHeap) != len(ready):
			t.Fatalf("queue %s: %d messages (%d kept), %d leased (%d), %d delayed (%d), %d ready, %d in the heap",
				name, n, q.msgs.len(), leased, q.leasedN, delayed, q.delayedN, len(ready), len(inHeap))
		case msgBytes != q.msgBytes || keyBytes != q.keyBytes:
			t.Fatalf("queue %s: message bytes %d, kept %d; key bytes %d, kept %d", name, msgBytes, q.msgBytes, keyBytes, q.keyBytes)
		case live != len(q.keys):
			t.Fatalf("queue %s: %d keys, %d in the FIFO", name, len(q.keys), live)
		case tot.Enqueued != uint64(n)+tot.Popped+tot.Acked+tot.DeadLettered+tot.Purged+tot.Expired:
			t.Fatalf("queue %s: %d stored, totals %+v", name, n, tot)
		}
		all += msgBytes + keyBytes
	}
	if all != f.bytes {
		t.Fatalf("cluster bytes %d, kept %d", all, f.bytes)
	}
}

// workload is a random command stream over a few queues that uses every
// op: keyed and delayed enqueues, batches, pops, leases with acks,
// releases and extends by their tokens, dead letters, purges, deletes,
// ticks, limits that bind and alarms.
type workload struct {
	rng    *rand.Rand
	ms     int64
	leases []DequeueResult
	queues []string
}

func newWorkload(seed uint64) *workload {
	return &workload{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), ms: 1000,
		queues: []string{"a", "b", "c", "a.dlq"}}
}

func (w *workload) next() Command {
	r := w.rng
	w.ms += r.Int64N(400)
	q := w.queues[r.IntN(len(w.queues))]
	body := []byte(fmt.Sprint(w.ms)[:1+r.IntN(4)])
	switch k := r.IntN(100); {
	case k < 25:
		c := Command{Op: OpEnqueue, Queue: q, ContentType: []string{"", "text/plain"}[r.IntN(2)], Body: body, Delay: r.Int64N(3) * 300}
		if r.IntN(2) == 0 {
			c.IdempotencyKey = fmt.Sprint("k", r.IntN(40))
		}
		c.Flags, c.Group, c.Attributes = w.extras()
		return c
	case k < 33:
		items := make([]BatchItem, 1+r.IntN(6))
		for i := range items {
			items[i] = BatchItem{Body: string(body[:r.IntN(len(body)+1)])}
			if r.IntN(3) == 0 {
				items[i].IdempotencyKey, items[i].Delay = fmt.Sprint("k", r.IntN(40)), r.Int64N(2)*300
			}
			items[i].Flags, items[i].Group, items[i].Attributes = w.extras()
		}
		return Command{Op: OpBatch, Queue: q, Items: items}
	case k < 40:
		return Command{Op: OpDequeue, Queue: q}
	case k < 44:
		return Command{Op: OpPopMany, Queue: q, Max: uint64(1 + r.IntN(4))}
	case k < 54:
		return Command{Op: OpLease, Queue: q, TTL: 200 + r.Int64N(800)}
	case k < 58:
		return Command{Op: OpLeaseMany, Queue: q, TTL: 200 + r.Int64N(800), Max: uint64(1 + r.IntN(4))}
	case k < 74 && len(w.leases) > 0:
		l := w.leases[r.IntN(len(w.leases))]
		op := []Op{OpAck, OpAck, OpRelease, OpExtend}[r.IntN(4)]
		return Command{Op: op, Queue: l.queue(), ID: l.Message.ID, Token: l.Token, TTL: 500, Delay: r.Int64N(2) * 200}
	case k < 77:
		return Command{Op: OpConfigure, Queue: []string{"a", "b"}[r.IntN(2)], MaxDeliveries: uint64(1 + r.IntN(3)), DeadLetterQueue: "a.dlq",
			MaxMessages: r.Int64N(3) * 8, MaxBytes: r.Int64N(2) * 2000}
	case k < 78:
		return Command{Op: OpConfigure, Queue: q, Fields: FieldRetention | FieldMaxMessageSize,
			Config: QueueSettings{Retention: r.Int64N(3) * 4000, MaxMessageSize: r.Int64N(2) * 12}}
	case k < 80:
		return Command{Op: OpPurge, Queue: q}
	case k < 82:
		return Command{Op: OpDeleteQueue, Queue: q}
	case k < 85:
		return Command{Op: OpTick}
	case k < 87:
		return Command{Op: OpSetLimits, MaxQueues: 2 + r.Int64N(4), MaxBytes: 4000 + r.Int64N(8000)}
	case k < 89:
		return Command{Op: OpAlarm, Node: uint64(1 + r.IntN(2)), Raise: r.IntN(5) == 0}
	default:
		return Command{Op: OpEnqueue, Queue: q, Body: body}
	}
}

// extras are a message's flags, group and attributes: most have none,
// many a group of two, a few attributes.
func (w *workload) extras() (flags byte, group string, attrs []Attribute) {
	r := w.rng
	group = []string{"", "", "g1", "g2", "g3"}[r.IntN(5)]
	if r.IntN(4) == 0 {
		attrs = []Attribute{{Name: "n", Type: "String", Value: fmt.Sprint(r.IntN(3))}}
	}
	if r.IntN(3) == 0 {
		flags = FlagDedupe
	}
	return flags, group, attrs
}

// queue is the queue a lease result was taken from: tests keep it in
// Message.Origin's place (see apply).
func (l DequeueResult) queue() string { return l.Message.ContentType }

// apply applies the next n commands to every FSM given and returns their
// results, FSM by FSM, checking the counts after each.
func (w *workload) apply(t *testing.T, n int, fsms ...*clockFSM) [][]any {
	t.Helper()
	out := make([][]any, len(fsms))
	for range n {
		cmd := w.next()
		for j, c := range fsms {
			r := c.at(w.ms, cmd)
			out[j] = append(out[j], r)
			checkCounts(t, c.f)
			checkPeek(t, c.f)
			var taken []DequeueResult
			if l, ok := r.(DequeueResult); ok && l.Found && cmd.Op == OpLease {
				taken = append(taken, l)
			}
			if ls, ok := r.(LeaseManyResult); ok {
				taken = append(taken, ls.Leases...)
			}
			for _, l := range taken {
				if j != 0 {
					break
				}
				l.Message.ContentType = cmd.Queue
				w.leases = append(w.leases, l)
				if len(w.leases) > 30 {
					w.leases = w.leases[1:]
				}
			}
		}
	}
	return out
}

// Random sequences of every op: the byte counters, counts and totals
// always equal a recount; two replicas give the same results and the same
// snapshot bytes; a replica restored from a snapshot has the same
// counters, encodes the same, and goes on exactly like the original.
func TestCountersMatchARecount(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			w := newWorkload(seed)
			a, b := newClock(t), newClock(t)
			res := w.apply(t, 3000, a, b)
			if !reflect.DeepEqual(res[0], res[1]) {
				t.Fatal("replicas disagree")
			}
			refused := map[string]int{}
			for _, r := range res[0] {
				if err, ok := r.(error); ok {
					refused[fmt.Sprint(errKind(err))]++
				}
			}
			t.Logf("refusals: %v; limits at the end %+v", refused, a.f.Limits())
			for _, kind := range []error{ErrQueueFull, ErrClusterFull, ErrNoSpace, ErrNoQueue} {
				if refused[fmt.Sprint(kind)] == 0 {
					t.Errorf("the workload never met %v", kind)
				}
			}
			sa, _ := a.f.Snapshot()
			sb, _ := b.f.Snapshot()
			if !bytes.Equal(sa, sb) {
				t.Fatal("snapshots of equal histories differ")
			}
			r := newClock(t)
			r.index = a.index
			if err := r.f.Restore(sa); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, r.f)
			if r.f.bytes != a.f.bytes || !reflect.DeepEqual(r.f.Limits(), a.f.Limits()) || r.f.idFloor != a.f.idFloor {
				t.Fatalf("restored %d bytes, limits %+v, floor %d; original %d, %+v, %d",
					r.f.bytes, r.f.Limits(), r.f.idFloor, a.f.bytes, a.f.Limits(), a.f.idFloor)
			}
			for _, q := range a.f.Queues() {
				sa, _ := a.f.Stats(q.Name)
				sr, _ := r.f.Stats(q.Name)
				if !reflect.DeepEqual(sa, sr) {
					t.Fatalf("queue %s: stats %+v, restored %+v", q.Name, sa, sr)
				}
			}
			if again, _ := r.f.Snapshot(); !bytes.Equal(again, sa) {
				t.Fatal("the restored state encodes differently")
			}
			if res := w.apply(t, 1500, a, r); !reflect.DeepEqual(res[0], res[1]) {
				t.Fatal("the restored replica diverged")
			}
			sa, _ = a.f.Snapshot()
			if sr, _ := r.f.Snapshot(); !bytes.Equal(sa, sr) {
				t.Fatal("snapshots differ after the same commands")
			}
		})
	}
}

// checkPeek: both of Peek's walks give what takes would find, in order:
// the ready messages and those whose lease or delay has ended, by id.
func checkPeek(t testing.TB, f *FSM) {
	t.Helper()
	for name, q := range f.queues {
		var want []*msg
		q.msgs.view(false).each(func(m *msg) {
			if m.readyAt(f.now) {
				want = append(want, m)
			}
		})
		for _, max := range []int{1, 3, MaxPeek} {
			w := want[:min(max, len(want))]
			if got := q.peekHeap(f.now, max); len(got) != len(w) || len(w) > 0 && !reflect.DeepEqual(got, w) {
				t.Fatalf("queue %s: peek %d of the heap %v, want %v", name, max, ids(got), ids(w))
			}
			if got, ok := q.peekTable(f.now, max); ok && (len(got) != len(w) || len(w) > 0 && !reflect.DeepEqual(got, w)) {
				t.Fatalf("queue %s: peek %d of the table %v, want %v", name, max, ids(got), ids(w))
			}
		}
	}
}

func ids(ms []*msg) (out []uint64) {
	for _, m := range ms {
		out = append(out, m.id)
	}
	return out
}

// errKind is the sentinel an error of the workload wraps.
func errKind(err error) error {
	for _, s := range []error{ErrQueueFull, ErrClusterFull, ErrNoSpace, ErrNoQueue, ErrLeaseLost, ErrNoMessage, ErrKeyReused, ErrInvalidArg} {
		if errIs(err, s) {
			return s
		}
	}
	return err
}

// checkGroups checks a queue's groups against its messages: each ready
// grouped message in its group's heap once (added to inHeap), each group's
// held its leased messages, groupedReady their count, avail exactly
// the groups with nothing leased and something ready, at their indexes.
func checkGroups(t testing.TB, q *queue, ready, inHeap map[uint64]bool) {
	t.Helper()
	leased := map[string]int{}
	q.msgs.view(false).each(func(m *msg) {
		if m.group() != "" && m.state != stateReady {
			leased[m.group()]++ // leased or delayed: both hold the group
		}
	})
	grouped := 0
	for name, g := range q.groups {
		for _, id := range g.ready {
			if m := q.msgs.get(id); !ready[id] || inHeap[id] || m.group() != name {
				t.Fatalf("queue %s: group %q holds %d, which is not ready, or is elsewhere too, or not of the group", q.name, name, id)
			}
			inHeap[id] = true
			grouped++
		}
		want := g.held == 0 && len(g.ready) > 0
		switch {
		case g.held != leased[name]:
			t.Fatalf("queue %s: group %q has %d in flight, %d leased", q.name, name, g.held, leased[name])
		case want != (g.at >= 0) || g.at >= 0 && q.avail[g.at] != g:
			t.Fatalf("queue %s: group %q at %d in avail, held %d, %d ready", q.name, name, g.at, g.held, len(g.ready))
		case g.held == 0 && len(g.ready) == 0:
			t.Fatalf("queue %s: empty group %q kept", q.name, name)
		}
		delete(leased, name)
	}
	for name, n := range leased {
		t.Fatalf("queue %s: %d leased of group %q, which is not kept", q.name, n, name)
	}
	for i, g := range q.avail {
		if g.at != i || q.groups[g.name] != g {
			t.Fatalf("queue %s: avail[%d] is group %q at %d", q.name, i, g.name, g.at)
		}
	}
	if grouped != q.groupedReady {
		t.Fatalf("queue %s: %d grouped ready, counted %d", q.name, grouped, q.groupedReady)
	}
}
