package chaos

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Report is what Check found in a history.
type Report struct {
	Ops                int            `json:"ops"`
	Counts             map[string]int `json:"counts"` // "enqueue/ok", "dequeue/unknown", ...
	Lost               int            `json:"lost"`   // acknowledged, never delivered, unexplained
	MissingExplained   int            `json:"missing_explained"`
	Unexpected         int            `json:"unexpected"`         // delivered, never sent
	DeliveredFailed    int            `json:"delivered_failed"`   // delivered though its enqueue definitely failed
	Duplicates         int            `json:"duplicates"`         // delivered more than once, unexplained
	Redeliveries       int            `json:"redeliveries"`       // leases redelivered after expiry or release
	ClientErrors       int            `json:"client_errors"`      // statuses a correct server never sends here
	Refused            int            `json:"refused"`            // enqueues refused by a limit (429/507): failed, not lost
	Linearizable       string         `json:"linearizable"`       // "yes", "no", "timeout" or "skipped"
	Problems           []string       `json:"problems,omitempty"` // one line per violation
	linearizationInfo  porcupine.LinearizationInfo
	linearizationModel porcupine.Model
}

// OK reports whether the history passed every check.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(format string, args ...any) {
	if len(r.Problems) < 50 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check runs the total-queue checks and porcupine's linearizability check
// over a history that ends with a complete drain.
//
// Total queue: every acknowledged enqueue is delivered exactly once; every
// delivered message was sent, and not by an enqueue that definitely
// failed. A pop whose outcome is unknown may have taken a message nobody
// saw, so up to that many missing messages per queue are explained; any
// more are lost. Pops have no redelivery, so every duplicate is a bug.
func Check(all []Op, timeout time.Duration) *Report {
	r := &Report{Ops: len(all), Counts: map[string]int{}}
	var ops, leaseOps []Op
	for _, op := range all {
		if op.Kind == "enqueue" && op.Outcome == Fail && op.Limit != "" {
			r.Refused++
		}
		if op.Queue == LeaseQueue {
			leaseOps = append(leaseOps, op)
			r.Counts[op.Kind+"/"+string(op.Outcome)]++
		} else {
			ops = append(ops, op)
		}
	}
	r.checkLeases(leaseOps)
	enq := map[string]Op{}
	delivered := map[string]int{}
	unknownPops := map[string]int{}
	for _, op := range ops {
		r.Counts[op.Kind+"/"+string(op.Outcome)]++
		r.clientError(op)
		switch op.Kind {
		case "enqueue":
			enq[op.Value] = op
		case "dequeue":
			if op.Outcome == Unknown {
				unknownPops[op.Queue]++
			}
			if op.Outcome == OK && op.Value != "" {
				delivered[op.Value]++
			}
		}
	}
	missing := map[string][]string{}
	for v, op := range enq {
		if op.Outcome == OK && delivered[v] == 0 {
			missing[op.Queue] = append(missing[op.Queue], v)
		}
	}
	for q, vs := range missing {
		explained := min(len(vs), unknownPops[q])
		r.MissingExplained += explained
		if lost := len(vs) - explained; lost > 0 {
			r.Lost += lost
			sort.Strings(vs)
			r.problem("queue %s: %d acknowledged messages never delivered, %d pops of unknown outcome explain only %d: %v",
				q, len(vs), unknownPops[q], explained, vs[:min(len(vs), 10)])
		}
	}
	for v, n := range delivered {
		op, ok := enq[v]
		switch {
		case !ok:
			r.Unexpected++
			r.problem("delivered %q that was never sent", v)
		case op.Outcome == Fail:
			r.DeliveredFailed++
			r.problem("delivered %q whose enqueue definitely failed (%s)", v, op.Detail)
		}
		if n > 1 {
			r.Duplicates += n - 1
			r.problem("delivered %q %d times", v, n)
		}
	}
	r.checkLinearizable(ops, timeout)
	return r
}

// queueInput is one operation for porcupine.
type queueInput struct {
	Queue   string
	Enqueue bool
	Value   string // enqueue: the value
	Unknown bool   // dequeue: nobody saw the answer
}

// queueModel is a FIFO queue; the state is the queued values joined by
// "\n", so states compare and hash cheaply.
var queueModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var names []string
		for _, op := range h {
			q := op.Input.(queueInput).Queue
			if _, ok := by[q]; !ok {
				names = append(names, q)
			}
			by[q] = append(by[q], op)
		}
		sort.Strings(names)
		out := make([][]porcupine.Operation, 0, len(names))
		for _, q := range names {
			out = append(out, by[q])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(string), input.(queueInput)
		if in.Enqueue {
			return true, s + in.Value + "\n"
		}
		head, rest, found := strings.Cut(s, "\n")
		if in.Unknown {
			if !found {
				return true, s
			}
			return true, rest
		}
		out := output.(string)
		if !found {
			return out == "", s
		}
		return out == head, rest
	},
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in := input.(queueInput)
		switch {
		case in.Enqueue:
			return fmt.Sprintf("enqueue(%s)", in.Value)
		case in.Unknown:
			return "dequeue() -> ?"
		default:
			return fmt.Sprintf("dequeue() -> %q", output)
		}
	},
	DescribeState: func(state any) string {
		return "[" + strings.ReplaceAll(strings.TrimSuffix(state.(string), "\n"), "\n", " ") + "]"
	},
}

// checkLinearizable feeds porcupine every operation that may have taken
// effect: acknowledged ones with their times, unknown ones with a return
// time after everything (they may take effect at any point after their
// call, or never). Definitely failed operations are left out.
//
// Unknown operations are first resolved where the history allows, which
// keeps the search small (each open-ended operation multiplies it):
//   - an unknown enqueue whose value was delivered happened before that
//     delivery returned;
//   - an unknown enqueue whose value never came out is left out. If it took
//     effect, only a pop of unknown outcome can have taken its value (the
//     drain emptied the queue and no one else saw it), and dropping both
//     and placing that pop at the end of the history changes no observed
//     result;
//   - by the same argument, pops of unknown outcome are left out of queues
//     where no acknowledged message is missing.
func (r *Report) checkLinearizable(ops []Op, timeout time.Duration) {
	if timeout < 0 {
		r.Linearizable = "skipped"
		return
	}
	deliveredAt := map[string]time.Duration{}
	for _, op := range ops {
		if op.Kind == "dequeue" && op.Outcome == OK && op.Value != "" {
			if t, ok := deliveredAt[op.Value]; !ok || op.Return < t {
				deliveredAt[op.Value] = op.Return
			}
		}
	}
	missingAcked := map[string]bool{}
	for _, op := range ops {
		if op.Kind == "enqueue" && op.Outcome == OK {
			if _, ok := deliveredAt[op.Value]; !ok {
				missingAcked[op.Queue] = true
			}
		}
	}
	var h []porcupine.Operation
	for _, op := range ops {
		if op.Outcome == Fail {
			continue
		}
		in := queueInput{Queue: op.Queue, Enqueue: op.Kind == "enqueue", Value: op.Value, Unknown: op.Outcome == Unknown}
		ret := int64(op.Return)
		if op.Outcome == Unknown {
			ret = math.MaxInt64
			if in.Enqueue {
				t, ok := deliveredAt[op.Value]
				if !ok {
					continue
				}
				in.Unknown, ret = false, int64(t)
			} else if !missingAcked[op.Queue] {
				continue
			}
		}
		h = append(h, porcupine.Operation{ClientId: op.Client + 1, Input: in, Call: int64(op.Call), Output: op.Value, Return: ret})
	}
	res, info := porcupine.CheckOperationsVerbose(queueModel, h, timeout)
	r.linearizationInfo, r.linearizationModel = info, queueModel
	switch res {
	case porcupine.Ok:
		r.Linearizable = "yes"
	case porcupine.Illegal:
		r.Linearizable = "no"
		r.problem("history is not linearizable as a FIFO queue (see linearizability.html)")
	default:
		// Inconclusive, not a violation: porcupine's search can take
		// longer than its budget on a loaded machine when pops of unknown
		// outcome must explain a missing message. Lost, unexpected and
		// duplicated messages and divergence are still checked; a slow
		// answer is never a fault.
		r.Linearizable = "timeout"
	}
}

// Visualize writes porcupine's HTML view of the check.
func (r *Report) Visualize(path string) error {
	return porcupine.VisualizePath(r.linearizationModel, r.linearizationInfo, path)
}

// clientError flags an answer a correct server never gives here.
func (r *Report) clientError(op Op) {
	if op.Outcome == Fail && strings.HasPrefix(op.Detail, "unexpected status") {
		r.ClientErrors++
		r.problem("client %d %s %s on node %d: %s", op.Client, op.Kind, op.Queue, op.Node, op.Detail)
	}
}

// checkLeases checks the lease queue, where messages leave only by ack and
// an unacked lease comes back: every acknowledged enqueue is delivered
// (no excuse: a lease whose answer was lost expires and is redelivered),
// nothing is delivered that was not sent or whose enqueue definitely
// failed, no delivery count repeats for a message, nothing is delivered
// after its ack succeeded, and an ack finds its message gone (404) only
// after another ack of it was attempted.
func (r *Report) checkLeases(ops []Op) {
	sent := map[string]Op{}
	deliveries := map[string][]Op{}
	acks := map[uint64][]Op{}
	for _, op := range ops {
		switch {
		case op.Kind == "enqueue":
			sent[op.Value] = op
		case op.Kind == "lease" && op.Outcome == OK && op.Value != "":
			deliveries[op.Value] = append(deliveries[op.Value], op)
		case op.Kind == "ack":
			acks[op.MsgID] = append(acks[op.MsgID], op)
		}
		r.clientError(op)
	}
	for v, op := range sent {
		if op.Outcome == OK && len(deliveries[v]) == 0 {
			r.Lost++
			r.problem("lease queue: acknowledged message %q was never delivered", v)
		}
	}
	for v, ds := range deliveries {
		op, ok := sent[v]
		switch {
		case !ok:
			r.Unexpected++
			r.problem("lease queue: delivered %q that was never sent", v)
		case op.Outcome == Fail:
			r.DeliveredFailed++
			r.problem("lease queue: delivered %q whose enqueue definitely failed", v)
		}
		r.Redeliveries += len(ds) - 1
		counts := map[uint64]bool{}
		for _, d := range ds {
			if counts[d.Deliveries] {
				r.Duplicates++
				r.problem("lease queue: %q delivered twice with Delivery-Count %d", v, d.Deliveries)
			}
			counts[d.Deliveries] = true
			for _, a := range acks[d.MsgID] {
				if a.Outcome == OK && a.Return < d.Call {
					r.Duplicates++
					r.problem("lease queue: %q delivered (call %v) after its ack succeeded (%v)", v, d.Call, a.Return)
				}
			}
		}
	}
	for id, as := range acks {
		for _, a := range as {
			if a.Detail != "no such message" {
				continue
			}
			explained := false
			for _, b := range as {
				if b.Call != a.Call && b.Call < a.Return && (b.Outcome == OK || b.Outcome == Unknown) {
					explained = true
				}
			}
			if !explained {
				r.problem("lease queue: ack of message %d found it gone, though no other ack of it was tried", id)
			}
		}
	}
}
