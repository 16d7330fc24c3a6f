package queuefsm

import (
	"bytes"
	"reflect"
	"testing"
)

func putIn(q, group, body string) Command {
	return Command{Op: OpEnqueue, Queue: q, Group: group, Body: []byte(body)}
}

// leaseBody leases from q at ms and returns the body ("" when none).
func (c *clockFSM) leaseBody(ms int64, q string, ttl int64) (string, DequeueResult) {
	c.t.Helper()
	r := c.lease(ms, q, ttl)
	checkCounts(c.t, c.f)
	return r.Message.Body, r
}

// Within a group, messages go out in order, one lease at a time; other
// groups and ungrouped messages go on meanwhile; Ready counts what takes
// would find (one per free group).
func TestGroupsHoldWhileLeased(t *testing.T) {
	c := newClock(t)
	for _, m := range [][2]string{{"g1", "a"}, {"g1", "b"}, {"g2", "c"}, {"", "d"}, {"g2", "e"}} {
		c.must(putIn("q", m[0], m[1]))
	}
	if n := c.f.Ready("q"); n != 3 { // g1, g2, d
		t.Fatalf("ready %d, want 3", n)
	}
	var got []string
	var leases []DequeueResult
	for {
		b, l := c.leaseBody(1000, "q", 5000)
		if !l.Found {
			break
		}
		got, leases = append(got, b), append(leases, l)
	}
	if !reflect.DeepEqual(got, []string{"a", "c", "d"}) || c.f.Ready("q") != 0 {
		t.Fatalf("leased %v, ready %d; want a c d, 0", got, c.f.Ready("q"))
	}
	c.must(Command{Op: OpAck, Queue: "q", ID: leases[0].Message.ID, Token: leases[0].Token})
	if n := c.f.Ready("q"); n != 1 {
		t.Fatalf("after the ack of a: ready %d", n)
	}
	if b, _ := c.leaseBody(1000, "q", 50000); b != "b" {
		t.Fatalf("after the ack of a: %q, want b", b)
	}
	// c's and d's leases end: Ready counts them before any command acts
	// on them, and c comes back ahead of d and e.
	if n := c.f.Ready("q"); n != 0 {
		t.Fatalf("ready %d before c's lease ends", n)
	}
	c.at(7000, put("other", "x"))
	if n := c.f.Ready("q"); n != 2 {
		t.Fatalf("ready %d after c's and d's leases ended, want 2", n)
	}
	if b, l := c.leaseBody(7000, "q", 5000); b != "c" || l.Message.Deliveries != 2 {
		t.Fatalf("after c's lease ended: %q (%d deliveries), want c again", b, l.Message.Deliveries)
	}
}

// A release puts the message back at its place in its group; a pop does
// not hold its group; a purge keeps leased groups held.
func TestGroupsReleasePopPurge(t *testing.T) {
	c := newClock(t)
	c.must(putIn("q", "g", "a"))
	c.must(putIn("q", "g", "b"))
	_, l := c.leaseBody(1000, "q", 5000)
	c.must(Command{Op: OpRelease, Queue: "q", ID: l.Message.ID, Token: l.Token})
	if b, _ := c.leaseBody(1000, "q", 5000); b != "a" {
		t.Fatalf("after a release: %q, want a", b)
	}
	c.must(putIn("p", "g", "x"))
	c.must(putIn("p", "g", "y"))
	for _, want := range []string{"x", "y"} {
		if r := c.must(Command{Op: OpDequeue, Queue: "p"}).(DequeueResult); r.Message.Body != want || r.Message.Group != "g" {
			t.Fatalf("pop %+v, want %s of g", r, want)
		}
	}
	c.must(Command{Op: OpPurge, Queue: "q"}) // drops b; a stays leased
	checkCounts(t, c.f)
	c.must(putIn("q", "g", "c"))
	if _, l := c.leaseBody(1000, "q", 5000); l.Found {
		t.Fatalf("leased %q while a holds the group", l.Message.Body)
	}
	if ps, _ := c.f.Peek("q", 10); len(ps) != 1 || ps[0].Body != "c" {
		t.Fatalf("peek %+v: a held group's ready messages show", ps)
	}
}

// Attributes and groups are kept, returned, carried to dead letters, kept
// by snapshots, and counted against the limits.
func TestAttributesKept(t *testing.T) {
	c := newClock(t)
	attrs := []Attribute{{"colour", "String", "red"}, {"n", "Number.int", "7"}, {"raw", "Binary", "\x00\xff"}}
	c.must(Command{Op: OpConfigure, Queue: "q", MaxDeliveries: 1, DeadLetterQueue: "d"})
	c.must(Command{Op: OpEnqueue, Queue: "q", ContentType: "text/plain", Group: "g", Attributes: attrs, Body: []byte("hi")})
	_, l := c.leaseBody(1000, "q", 10)
	if !reflect.DeepEqual(l.Message.Attributes, attrs) || l.Message.Group != "g" {
		t.Fatalf("leased %+v", l.Message)
	}
	if s, _ := c.f.Stats("q"); s.Bytes != Cost("text/plain", 2, "g", attrs) {
		t.Fatalf("bytes %d, want %d", s.Bytes, Cost("text/plain", 2, "g", attrs))
	}
	c.at(2000, put("q", "z")) // the lease ends; the next take dead-letters it
	c.lease(2000, "q", 10)
	r := c.must(Command{Op: OpDequeue, Queue: "d", Time: 2000}).(DequeueResult)
	if !reflect.DeepEqual(r.Message.Attributes, attrs) || r.Message.Group != "g" || r.Message.Origin == nil {
		t.Fatalf("dead letter %+v", r.Message)
	}
	c.must(Command{Op: OpEnqueue, Queue: "q", Group: "g", Attributes: attrs, Body: []byte("again")})
	snap, _ := c.f.Snapshot()
	g := New()
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, g)
	again, _ := g.Snapshot()
	ps, _ := g.Peek("q", 10)
	if !bytes.Equal(snap, again) || len(ps) != 1 || !reflect.DeepEqual(ps[0].Attributes, attrs) || ps[0].Group != "g" {
		t.Fatalf("restored %+v", ps)
	}
}

func TestExtrasChecked(t *testing.T) {
	c := newClock(t)
	many := make([]Attribute, MaxAttributes+1)
	for i := range many {
		many[i] = Attribute{Name: string(rune('a' + i)), Type: "String", Value: "v"}
	}
	for name, cmd := range map[string]Command{
		"a name twice":    {Op: OpEnqueue, Queue: "q", Attributes: []Attribute{{"a", "String", "1"}, {"a", "String", "2"}}},
		"no type":         {Op: OpEnqueue, Queue: "q", Attributes: []Attribute{{"a", "", "1"}}},
		"group of spaces": {Op: OpEnqueue, Queue: "q", Group: "a b"},
		"unknown flag":    {Op: OpEnqueue, Queue: "q", Flags: 2},
		"in a batch":      {Op: OpBatch, Queue: "q", Items: []BatchItem{{Body: "x"}, {Group: string(make([]byte, MaxGroupLen+1))}}},
		"negative delay":  {Op: OpBatch, Queue: "q", Items: []BatchItem{{Body: "x", Delay: -1}}},
		"negative wait":   {Op: OpConfigure, Queue: "q", Fields: FieldReceiveWait, Config: QueueSettings{ReceiveWait: -1}},
	} {
		if r := c.at(1000, cmd); !errIs(r, ErrInvalidArg) {
			t.Errorf("%s: %v, want ErrInvalidArg", name, r)
		}
	}
	if r := c.at(1000, Command{Op: OpEnqueue, Queue: "q", Attributes: many}); !errIs(r, ErrBadCommand) {
		t.Errorf("11 attributes: %v, want ErrBadCommand (the decoder bounds them)", r)
	}
	if qs := c.f.Queues(); len(qs) != 0 {
		t.Fatalf("refused commands made %+v", qs)
	}
}

// A queue's settings are kept; MaxMessageSize counts body and attributes.
func TestSettings(t *testing.T) {
	c := newClock(t)
	set := QueueSettings{Visibility: 30000, Delay: 5000, ReceiveWait: 20000, MaxMessageSize: 10, Retention: 60000, ContentDedup: true}
	c.must(Command{Op: OpConfigure, Queue: "q", Fields: settingsFields, Config: set})
	c.at(3000, Command{Op: OpConfigure, Queue: "q", Fields: FieldDelay})
	s, _ := c.f.Stats("q")
	set.Delay = 0
	if s.Config.QueueSettings != set || s.Config.Created != 1000 || s.Config.Modified != 3000 {
		t.Fatalf("config %+v", s.Config)
	}
	if r := c.at(3000, Command{Op: OpEnqueue, Queue: "q", Body: []byte("0123456789")}); asErr(r) != nil {
		t.Fatalf("10 bytes: %v", r)
	}
	if r := c.at(3000, Command{Op: OpEnqueue, Queue: "q", Body: []byte("01234"), Attributes: []Attribute{{"a", "String", "b"}}}); !errIs(r, ErrTooLarge) {
		t.Fatalf("5 bytes and an attribute of 7: %v", r)
	}
	if r := c.at(3000, batchOf("q", 2, "01234567890")); !errIs(r, ErrTooLarge) {
		t.Fatalf("a batch of 11-byte messages: %v", r)
	}
	v4 := Command{Op: OpConfigure, Time: 3000, Queue: "q", Fields: FieldVisibility, Config: set}.encodeIn(commandV4)
	if r := c.f.Apply(100<<SeqPosBits, v4); !errIs(r, ErrInvalidArg) {
		t.Fatalf("a version 4 configure of a setting: %v", r)
	}
}

// Messages leave at the end of the queue's retention in every state, at
// a deadline NextDeadline names, counted as expired.
func TestRetention(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpConfigure, Queue: "q", Fields: FieldRetention, Config: QueueSettings{Retention: 60000}})
	c.at(1000, putIn("q", "g", "leased"))
	c.at(1000, Command{Op: OpEnqueue, Queue: "q", Body: []byte("delayed"), Delay: 100000})
	c.at(30000, putIn("q", "g", "ready"))
	c.lease(30000, "q", 200000)
	if at, ok := c.f.NextDeadline(); !ok || at != 62000 {
		t.Fatalf("next deadline %d %v, want 62000 (stored at 1 s, kept 60 s, rounded up)", at, ok)
	}
	c.at(62000, Command{Op: OpTick})
	checkCounts(t, c.f)
	s, _ := c.f.Stats("q")
	if s.Depth != 1 || s.Leased != 0 || s.Delayed != 0 || s.Totals.Expired != 2 {
		t.Fatalf("after 61 s: %+v", s)
	}
	if b, _ := c.leaseBody(62000, "q", 1000); b != "ready" { // the group is free again
		t.Fatalf("leased %q, want ready", b)
	}
	c.at(91000, Command{Op: OpTick})
	if s, _ := c.f.Stats("q"); s.Leased != 0 || s.Totals.Expired != 3 {
		t.Fatalf("after 90 s: %+v", s)
	}
	checkCounts(t, c.f)
}

// A key that comes back with another message refuses it, unless the
// command has FlagDedupe (SQS's deduplication); a batch's items replay
// remembered keys and each other's.
func TestDedupe(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "k", Body: []byte("a")})
	if r := c.at(1000, Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "k", Body: []byte("b")}); !errIs(r, ErrKeyReused) {
		t.Fatalf("another body: %v", r)
	}
	if r := c.at(1000, Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "k", Flags: FlagDedupe, Body: []byte("b")}); r != (EnqueueResult{ID: 1, Replay: true}) {
		t.Fatalf("another body with FlagDedupe: %v", r)
	}
	r := c.must(Command{Op: OpBatch, Queue: "q", Items: []BatchItem{
		{Body: "a", IdempotencyKey: "k"}, {Body: "y", IdempotencyKey: "j"}, {Body: "y", IdempotencyKey: "j"}, {Body: "z"},
		{Body: "other", IdempotencyKey: "j", Flags: FlagDedupe}}})
	want := BatchResult{IDs: []uint64{1, 2, 2, 3, 2}, Replay: []bool{true, false, true, false, true}}
	if res := r.(BatchResult); !reflect.DeepEqual(res, want) {
		t.Fatalf("batch %+v, want %+v", res, want)
	}
	if r := c.at(1000, Command{Op: OpBatch, Queue: "q", Items: []BatchItem{{Body: "new", IdempotencyKey: "i"}, {Body: "other", IdempotencyKey: "i"}}}); !errIs(r, ErrKeyReused) {
		t.Fatalf("a batch reusing its own key: %v", r)
	}
	if s, _ := c.f.Stats("q"); s.Depth != 3 {
		t.Fatalf("depth %d, want 3", s.Depth)
	}
}

// A delayed message holds its group as a lease does, so that no later
// message of the group overtakes it: delayed at its enqueue, or by a
// release.
func TestGroupsHoldWhileDelayed(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpEnqueue, Queue: "q", Group: "g", Delay: 3000, Body: []byte("a")})
	c.must(putIn("q", "g", "b"))
	c.must(putIn("q", "h", "x"))
	if b, _ := c.leaseBody(1000, "q", 10000); b != "x" {
		t.Fatalf("leased %q while a, delayed, holds g; want x of h", b)
	}
	if b, _ := c.leaseBody(1000, "q", 10000); b != "" {
		t.Fatalf("leased %q before the delay of a ends", b)
	}
	if c.f.Ready("q") != 0 {
		t.Fatalf("ready %d", c.f.Ready("q"))
	}
	_, l := c.leaseBody(4000, "q", 10000)
	if l.Message.Body != "a" {
		t.Fatalf("after a's delay: %q", l.Message.Body)
	}
	c.at(4000, Command{Op: OpRelease, Queue: "q", ID: l.Message.ID, Token: l.Token, Delay: 3000})
	if b, _ := c.leaseBody(5000, "q", 10000); b != "" {
		t.Fatalf("leased %q while a, released with a delay, holds g", b)
	}
	if b, _ := c.leaseBody(7000, "q", 10000); b != "a" {
		t.Fatalf("after the release's delay: %q, want a", b)
	}
}

// Enqueues, batches and configures of version 4 replay under the limits
// as they applied (version 5 did not change their rules).
func TestVersion4StillLimited(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpConfigure, Queue: "q", MaxMessages: 1})
	apply := func(cmd Command) any {
		c.index++
		cmd.Time = 1000
		return c.f.Apply(c.index<<SeqPosBits, cmd.encodeIn(commandV4))
	}
	if r := apply(put("q", "a")); asErr(r) != nil {
		t.Fatal(r)
	}
	if r := apply(put("q", "b")); !errIs(r, ErrQueueFull) {
		t.Fatalf("a version 4 enqueue past max_messages: %v", r)
	}
	if r := apply(batchOf("q", 1, "c")); !errIs(r, ErrQueueFull) {
		t.Fatalf("a version 4 batch past max_messages: %v", r)
	}
}

// A batch of replays only stores nothing and is never refused, as a
// replayed enqueue is not.
func TestBatchOfReplaysPassesAlarms(t *testing.T) {
	c := newClock(t)
	c.must(Command{Op: OpEnqueue, Queue: "q", IdempotencyKey: "k", Body: []byte("a")})
	c.must(Command{Op: OpAlarm, Node: 1, Raise: true})
	r := c.must(Command{Op: OpBatch, Queue: "q", Items: []BatchItem{{Body: "a", IdempotencyKey: "k"}}})
	if res := r.(BatchResult); res.IDs[0] != 1 || !res.Replay[0] {
		t.Fatalf("replay under an alarm: %+v", res)
	}
}

// A lease many takes what single leases would, except that it goes on
// through a group it has taken from: consecutive messages of a group in
// one command, other groups after, none of a group held before it.
func TestLeaseMany(t *testing.T) {
	c := newClock(t)
	for _, m := range [][2]string{{"g", "a1"}, {"h", "b1"}, {"g", "a2"}, {"", "u"}, {"g", "a3"}, {"h", "b2"}, {"k", "c1"}} {
		c.must(putIn("q", m[0], m[1]))
	}
	c.must(putIn("q", "k", "c2"))
	_, held := c.leaseBody(1000, "q", 5000) // a1: holds g
	r := c.must(Command{Op: OpLeaseMany, Queue: "q", TTL: 5000, Max: 4}).(LeaseManyResult)
	var got []string
	tokens := map[string]bool{held.Token: true}
	for _, l := range r.Leases {
		got = append(got, l.Message.Body)
		if tokens[l.Token] || l.Expires != 6000 {
			t.Fatalf("lease %+v: tokens must differ, expiry 6000", l)
		}
		tokens[l.Token] = true
	}
	if !reflect.DeepEqual(got, []string{"b1", "b2", "u", "c1"}) {
		t.Fatalf("lease many took %v, want b1 b2 (h, in a row) u c1", got)
	}
	checkCounts(t, c.f)
	if r := c.must(Command{Op: OpLeaseMany, Queue: "q", TTL: 5000, Max: 10}).(LeaseManyResult); len(r.Leases) != 0 {
		t.Fatalf("every group is held, yet %d leased", len(r.Leases))
	}
	if r := c.at(1000, Command{Op: OpLeaseMany, Queue: "q", TTL: 5000}); !errIs(r, ErrInvalidArg) {
		t.Fatalf("max 0: %v", r)
	}
	if r := c.f.Apply(999<<SeqPosBits, Command{Op: OpLeaseMany, Time: 1000, Queue: "q", Max: 1}.encodeIn(commandV4)); !errIs(r, ErrBadCommand) {
		t.Fatalf("lease many in version 4: %v", r)
	}
}
