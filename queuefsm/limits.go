package queuefsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// What the state machine counts against max_bytes. A stored message costs
// its body and content type plus MessageOverhead: its 64-byte record, its
// 16-byte slot in the queue's table and its 8-byte place in the ready heap
// (or a 16-byte timer while leased or delayed), rounded up; measured 93
// bytes (BenchmarkMemoryPerMessage). A remembered idempotency key costs
// the key plus KeyOverhead: its map entry (string header, and 48 bytes of
// id, checksum and time, with the map's slack) and its 24-byte place in
// the queue's FIFO of keys; measured 122 bytes at 50,000 and 100,000 keys
// and up to 175 while the map grows (BenchmarkMemoryPerKey). Bodies and
// keys are counted at their length, not at the allocator's size class.
const (
	MessageOverhead = 96
	KeyOverhead     = 160
)

// Default cluster limits, for a new state and for one restored from a
// snapshot older than version 4. 512 MiB of state fits a 3-node cluster on
// one 2-core machine with a few GiB: each node holds the whole state, plus
// about 96 MiB of collector headroom and the raft log kept in memory
// between snapshots: about 0.75 GiB per node at the limit.
const (
	DefaultMaxQueues = 10_000
	DefaultMaxBytes  = 512 << 20
)

// Errors of the limits, as Apply's deterministic results. A refused write
// stores nothing. The results are a *LimitError (ErrQueueFull,
// ErrClusterFull) or a *NoSpaceError (ErrNoSpace), which name what was in
// the way; errors.Is matches the sentinels.
var (
	// ErrQueueFull: the write would pass the queue's own max_messages or
	// max_bytes.
	ErrQueueFull = errors.New("queuefsm: queue full")
	// ErrClusterFull: the write would pass the cluster's max_bytes, or
	// make a queue past max_queues.
	ErrClusterFull = errors.New("queuefsm: cluster full")
	// ErrNoSpace: a node raised a disk space alarm; only what frees space
	// passes until it is cleared.
	ErrNoSpace = errors.New("queuefsm: no space: disk alarm raised")
)

// LimitError says which limit refused a write: its name (max_messages,
// max_bytes, max_queues), the queue it belongs to ("" for the cluster's),
// its value, the usage before the write, and what the write would have
// added (messages, bytes or queues, as the limit counts).
type LimitError struct {
	Limit   string
	Queue   string
	Value   int64
	Usage   int64
	Request int64
}

func (e *LimitError) Error() string {
	scope := "cluster"
	if e.Queue != "" {
		scope = "queue " + e.Queue
	}
	return fmt.Sprintf("%v: %s %s is %d, %d in use, %d more asked", e.sentinel(), scope, e.Limit, e.Value, e.Usage, e.Request)
}

// Is matches ErrQueueFull for a queue's limit, ErrClusterFull for the
// cluster's.
func (e *LimitError) Is(target error) bool { return target == e.sentinel() }

func (e *LimitError) sentinel() error {
	if e.Queue != "" {
		return ErrQueueFull
	}
	return ErrClusterFull
}

// NoSpaceError names the nodes whose disk alarm refused a write.
type NoSpaceError struct {
	Nodes []uint64
}

func (e *NoSpaceError) Error() string {
	ids := make([]string, len(e.Nodes))
	for i, id := range e.Nodes {
		ids[i] = fmt.Sprint(id)
	}
	return fmt.Sprintf("%v by node %s", ErrNoSpace, strings.Join(ids, ", "))
}

func (e *NoSpaceError) Is(target error) bool { return target == ErrNoSpace }

// MessageCost is what a message counts for against max_bytes.
func MessageCost(contentType string, bodyLen int) int64 {
	return int64(bodyLen+len(contentType)) + MessageOverhead
}

// KeyCost is what a remembered idempotency key counts for (0 for none).
// An enqueue is admitted with its key counted in full, even when storing
// it forgets the oldest key at MaxDedupeKeys.
func KeyCost(key string) int64 {
	if key == "" {
		return 0
	}
	return int64(len(key)) + KeyOverhead
}

// ClusterLimits are the cluster-wide limits (0: none) with their usage and
// the raised alarms.
type ClusterLimits struct {
	MaxQueues int64
	MaxBytes  int64
	Queues    int      // queues now
	Bytes     int64    // bytes now, as MessageCost and KeyCost count them
	Alarms    []uint64 // nodes whose disk alarm is raised, ascending
}

// Limits returns the cluster limits and their usage.
func (f *FSM) Limits() ClusterLimits {
	l := f.limits
	l.Queues, l.Bytes, l.Alarms = len(f.queues), f.bytes, f.Alarms()
	return l
}

// Alarms lists the nodes whose disk alarm is raised, ascending (nil if
// none).
func (f *FSM) Alarms() []uint64 {
	if len(f.alarms) == 0 {
		return nil
	}
	return slices.Clone(f.alarms)
}

// Admit returns the error Apply would give now to an enqueue or batch of
// messages messages costing bytes in all (MessageCost of each, plus
// KeyCost of the key), or nil; it changes nothing. A proposer calls it
// under the node's read lock, so that most writes sure to be refused never
// reach the log; Apply decides. A replay is never refused: skip Admit when
// Remembers the enqueue's key.
func (f *FSM) Admit(queue string, messages int, bytes int64) error {
	return f.admit(f.queues[queue], messages, bytes)
}

// Remembers reports whether key is remembered in queue and not past the
// dedupe window: an enqueue with it would be a replay (or ErrKeyReused).
func (f *FSM) Remembers(queue, key string) bool {
	s, ok := f.queues[queue].seen(key)
	return ok && s.at+DedupeWindow > f.now
}

// admitCall is admit for an enqueue or batch command: commands of versions
// 1 to 3 are never refused (see call.limited).
func (f *FSM) admitCall(c *call, messages int, bytes int64) error {
	if !c.limited() {
		return nil
	}
	return f.admit(c.q, messages, bytes)
}

// admit is the rule for writes into a queue (q, nil if it does not
// exist): no alarm raised, room for the queue if it must be made, the
// queue's own limits, then the cluster's bytes. A limit is reached, not
// passed: usage + request = limit is admitted.
func (f *FSM) admit(q *queue, messages int, bytes int64) error {
	if len(f.alarms) > 0 {
		return &NoSpaceError{Nodes: f.Alarms()}
	}
	if q == nil {
		if err := f.roomFor(1); err != nil {
			return err
		}
	} else if err := q.admit(messages, bytes); err != nil {
		return err
	}
	if l := f.limits.MaxBytes; l > 0 && f.bytes+bytes > l {
		return &LimitError{Limit: "max_bytes", Value: l, Usage: f.bytes, Request: bytes}
	}
	return nil
}

// admit is the rule of the queue's own limits.
func (q *queue) admit(messages int, bytes int64) error {
	n := int64(q.msgs.len())
	if q.maxMessages > 0 && n+int64(messages) > q.maxMessages {
		return &LimitError{Limit: "max_messages", Queue: q.name, Value: q.maxMessages, Usage: n, Request: int64(messages)}
	}
	if q.maxBytes > 0 && q.bytes()+bytes > q.maxBytes {
		return &LimitError{Limit: "max_bytes", Queue: q.name, Value: q.maxBytes, Usage: q.bytes(), Request: bytes}
	}
	return nil
}

// roomFor refuses to make k more queues past max_queues; making none is
// never refused, even above the limit.
func (f *FSM) roomFor(k int) error {
	n := int64(len(f.queues))
	if l := f.limits.MaxQueues; k > 0 && l > 0 && n+int64(k) > l {
		return &LimitError{Limit: "max_queues", Value: l, Usage: n, Request: int64(k)}
	}
	return nil
}

// setLimits sets the cluster limits its Fields name (0: both). A limit
// below the usage is allowed: it only refuses new writes.
func (f *FSM) setLimits(c call) any {
	set, err := c.fields(FieldMaxQueues | FieldMaxBytes)
	if err != nil {
		return err
	}
	if c.MaxQueues < 0 || c.MaxBytes < 0 {
		return fmt.Errorf("%w: negative limit", ErrInvalidArg)
	}
	if set&FieldMaxQueues != 0 {
		f.limits.MaxQueues = c.MaxQueues
	}
	if set&FieldMaxBytes != 0 {
		f.limits.MaxBytes = c.MaxBytes
	}
	return Done{}
}

// alarm raises or clears node's disk space alarm; raising a raised alarm
// or clearing a clear one changes nothing.
func (f *FSM) alarm(c call) any {
	if c.Node == 0 || c.Node > MaxProposer {
		return fmt.Errorf("%w: node %d out of 1 to %d", ErrInvalidArg, c.Node, MaxProposer)
	}
	i, raised := slices.BinarySearch(f.alarms, c.Node)
	switch {
	case c.Raise && !raised:
		f.alarms = slices.Insert(f.alarms, i, c.Node)
	case !c.Raise && raised:
		f.alarms = slices.Delete(f.alarms, i, i+1)
	}
	return Done{}
}

// fields returns the fields a command sets: those it names, which must be
// among all, or all when it names none.
func (c *call) fields(all Fields) (Fields, error) {
	if c.Fields == 0 {
		return all, nil
	}
	if c.Fields&^all != 0 {
		return 0, fmt.Errorf("%w: fields %#x are not %v's", ErrInvalidArg, uint16(c.Fields&^all), c.Op)
	}
	return c.Fields, nil
}
