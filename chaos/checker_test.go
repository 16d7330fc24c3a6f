package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// hist builds a history from compact steps: each op takes 10ms and they
// run one after another unless times are given.
type step struct {
	kind, queue, value string
	outcome            Outcome
	call, ret          time.Duration
}

func build(steps ...step) []Op {
	var ops []Op
	for i, s := range steps {
		call, ret := s.call, s.ret
		if call == 0 && ret == 0 {
			call, ret = time.Duration(i)*10*time.Millisecond, time.Duration(i)*10*time.Millisecond+5*time.Millisecond
		}
		q := s.queue
		if q == "" {
			q = "q0"
		}
		out := s.outcome
		if out == "" {
			out = OK
		}
		ops = append(ops, Op{Client: i % 3, Node: 1, Kind: s.kind, Queue: q, Value: s.value, Outcome: out, Call: call, Return: ret})
	}
	return ops
}

func enq(v string) step           { return step{kind: "enqueue", value: v} }
func deq(v string) step           { return step{kind: "dequeue", value: v} }
func with(s step, o Outcome) step { s.outcome = o; return s }

func TestCheckPasses(t *testing.T) {
	r := Check(build(enq("a"), enq("b"), deq("a"), with(enq("c"), Unknown), deq("b"), deq("c"), deq("")), 10*time.Second)
	if !r.OK() || r.Linearizable != "yes" {
		t.Fatalf("a correct history failed: %+v", r.Problems)
	}
}

func TestCheckFindsViolations(t *testing.T) {
	for _, c := range []struct {
		name string
		ops  []Op
		want string
	}{
		{"lost", build(enq("a"), enq("b"), deq("a"), deq("")), "never delivered"},
		{"duplicate", build(enq("a"), deq("a"), deq("a"), deq("")), "2 times"},
		{"unexpected", build(enq("a"), deq("a"), deq("zz"), deq("")), "never sent"},
		{"delivered though failed", build(with(enq("a"), Fail), deq("a"), deq("")), "definitely failed"},
		{"fifo", build(enq("a"), enq("b"), deq("b"), deq("a"), deq("")), "not linearizable"},
		{"stale empty", build(enq("a"), deq(""), deq("a"), deq("")), "not linearizable"},
		{"bad status", append(build(enq("a"), deq("a")), Op{Kind: "enqueue", Queue: "q0", Value: "x", Outcome: Fail, Detail: "unexpected status 500: boom"}), "unexpected status"},
	} {
		r := Check(c.ops, 10*time.Second)
		if r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), c.want) {
			t.Errorf("%s: problems %q, want one with %q", c.name, r.Problems, c.want)
		}
	}
}

// A pop whose answer was lost may have taken a message: one missing
// message is explained per unknown pop in that queue, and no more.
func TestCheckUnknownPops(t *testing.T) {
	ok := Check(build(enq("a"), enq("b"), with(deq(""), Unknown), deq("b"), deq("")), 10*time.Second)
	if !ok.OK() || ok.MissingExplained != 1 {
		t.Fatalf("one unknown pop should explain one missing message: %+v", ok.Problems)
	}
	bad := Check(build(enq("a"), enq("b"), enq("c"), with(deq(""), Unknown), deq("c"), deq("")), 10*time.Second)
	if bad.OK() || bad.Lost != 1 {
		t.Fatalf("two missing, one unknown pop: lost %d, problems %q", bad.Lost, bad.Problems)
	}
}

// Concurrent operations may take effect in either order.
func TestCheckConcurrency(t *testing.T) {
	ms := time.Millisecond
	ops := build(
		step{kind: "enqueue", value: "a", call: 0, ret: 50 * ms},
		step{kind: "enqueue", value: "b", call: 10 * ms, ret: 20 * ms},
		step{kind: "dequeue", value: "b", call: 30 * ms, ret: 40 * ms},
		step{kind: "dequeue", value: "a", call: 60 * ms, ret: 70 * ms},
		step{kind: "dequeue", value: "", call: 80 * ms, ret: 90 * ms},
	)
	if r := Check(ops, 10*time.Second); !r.OK() {
		t.Fatalf("overlapping enqueues may be ordered either way: %q", r.Problems)
	}
}

// Lease-queue histories: steps run one after another, 10 ms apart.
func leaseHist(ops ...Op) []Op {
	for i := range ops {
		ops[i].Queue = LeaseQueue
		if ops[i].Outcome == "" {
			ops[i].Outcome = OK
		}
		ops[i].Call = time.Duration(i) * 10 * time.Millisecond
		ops[i].Return = ops[i].Call + 5*time.Millisecond
	}
	return ops
}

func lsEnq(v string) Op { return Op{Kind: "enqueue", Value: v} }
func lsLease(v string, id, n uint64) Op {
	return Op{Kind: "lease", Value: v, MsgID: id, Deliveries: n, Token: fmt.Sprint(id, ".", n)}
}
func lsAck(id uint64, detail string, out Outcome) Op {
	return Op{Kind: "ack", MsgID: id, Outcome: out, Detail: detail}
}

func TestCheckLeases(t *testing.T) {
	good := leaseHist(lsEnq("a"), lsLease("a", 1, 1), lsLease("a", 1, 2), lsAck(1, "", Unknown), lsAck(1, "no such message", Fail))
	if r := Check(good, time.Second); !r.OK() || r.Redeliveries != 1 {
		t.Fatalf("an expired lease redelivered, then acked twice: %q (redeliveries %d)", r.Problems, r.Redeliveries)
	}
	for _, c := range []struct {
		name string
		ops  []Op
		want string
	}{
		{"lost", leaseHist(lsEnq("a"), lsEnq("b"), lsLease("a", 1, 1), lsAck(1, "", OK)), "never delivered"},
		{"same count twice", leaseHist(lsEnq("a"), lsLease("a", 1, 1), lsLease("a", 1, 1)), "twice with Delivery-Count 1"},
		{"after ack", leaseHist(lsEnq("a"), lsLease("a", 1, 1), lsAck(1, "", OK), lsLease("a", 1, 2)), "after its ack succeeded"},
		{"gone unexplained", leaseHist(lsEnq("a"), lsLease("a", 1, 1), lsAck(1, "no such message", Fail)), "no other ack"},
		{"unexpected", leaseHist(lsLease("zz", 1, 1)), "never sent"},
	} {
		r := Check(c.ops, time.Second)
		if r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), c.want) {
			t.Errorf("%s: problems %q, want one with %q", c.name, r.Problems, c.want)
		}
	}
}

// An enqueue refused by a limit did not happen: the FIFO goes on without
// it, it is counted as refused, not lost; delivering it is a violation.
func TestRefusedEnqueue(t *testing.T) {
	ops := build(enq("a"), enq("b"), deq("a"), enq("c"), deq("c"), deq(""))
	ops[1].Outcome, ops[1].Limit, ops[1].Detail = Fail, "max_messages", "queue full"
	r := Check(ops, time.Minute)
	if !r.OK() || r.Refused != 1 || r.Lost != 0 || r.Linearizable != "yes" {
		t.Fatalf("refused enqueue: %+v", r)
	}
	ops[4].Value = "b" // the refused message comes out instead of c
	if r := Check(ops, time.Minute); r.OK() || r.DeliveredFailed != 1 {
		t.Fatalf("a refused message delivered passed: %+v", r)
	}
}
