// Package queuefsm is raftq's replicated state: named FIFO queues with
// leases, redelivery, dead letters, delays and idempotent enqueue.
//
// It is a pure value: no I/O, clocks, randomness, goroutines or locks. Time
// arrives in the commands (each proposer's stamp, from a monotonic clock
// per run); the state machine's "now" is a cluster time that advances by
// how far the proposers' stamps advance, never by where they stand (see
// FSM.advance), so every replica agrees on what has expired and no node's
// clock offset moves it. Every replica that applies the same commands in
// the same order ends in the same state and returns the same results, and
// Snapshot encodes that state deterministically so replicas can be
// compared byte for byte.
package queuefsm

import (
	"container/heap"
	"errors"
	"fmt"
	"sort"
)

// Limits (documented in the README).
const (
	MaxQueueNameLen = 128
	// MaxClockStep bounds how far one command without a proposer
	// (versions 1 and 2) can move the clock forward, so such a proposer
	// whose clock runs far ahead cannot expire every lease at once.
	// Commands with a proposer move the clock by elapsed time, uncapped
	// (see FSM.advance).
	MaxClockStep = 60 * 1000
	// DedupeWindow is how long an idempotency key is remembered.
	DedupeWindow = 10 * 60 * 1000
	// MaxDedupeKeys bounds the keys remembered per queue; at the bound the
	// oldest key is forgotten early.
	MaxDedupeKeys        = 100000
	MaxIdempotencyKeyLen = 128
)

// Errors returned by Apply as deterministic results.
var (
	ErrInvalidName = errors.New("queuefsm: invalid queue name")
	ErrInvalidArg  = errors.New("queuefsm: invalid argument")
	// ErrNoMessage: no message with that id is stored in the queue.
	ErrNoMessage = errors.New("queuefsm: no such message")
	// ErrLeaseLost: the token no longer holds the message's lease (it
	// expired, and perhaps another consumer leased the message since).
	ErrLeaseLost = errors.New("queuefsm: lease token does not hold the message")
	// ErrKeyReused: an idempotency key came back with a different message.
	ErrKeyReused = errors.New("queuefsm: idempotency key reused with a different message")
	// ErrTooLarge: the message is over its queue's MaxMessageSize.
	ErrTooLarge = errors.New("queuefsm: message too large")
)

// ValidateName reports whether name is a legal queue name: 1 to 128 of
// A-Z a-z 0-9 . _ -, and not "." or ".." (an HTTP router cleans those out
// of a path, so such a queue could never be read).
func ValidateName(name string) error {
	if name == "." || name == ".." {
		return fmt.Errorf("%w: %q is a path segment of its own", ErrInvalidName, name)
	}
	return validateNameV2(name)
}

// validateNameV2 is the rule for commands of versions 1 and 2, which
// accepted "." and "..": replaying an old log must give the state it gave.
func validateNameV2(name string) error {
	if len(name) == 0 || len(name) > MaxQueueNameLen {
		return fmt.Errorf("%w: length must be 1 to %d, got %d", ErrInvalidName, MaxQueueNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("%w: byte %q at %d; allowed are A-Z a-z 0-9 . _ -", ErrInvalidName, name[i], i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// ValidateIdempotencyKey: 1 to 128 printable ASCII characters.
func ValidateIdempotencyKey(k string) error {
	if len(k) == 0 || len(k) > MaxIdempotencyKeyLen {
		return fmt.Errorf("%w: idempotency key must be 1 to %d characters", ErrInvalidArg, MaxIdempotencyKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return fmt.Errorf("%w: idempotency key has a non-printable byte at %d", ErrInvalidArg, i)
		}
	}
	return nil
}

// Origin says where a dead-lettered message came from.
type Origin struct {
	Queue      string
	ID         uint64
	Deliveries uint64
}

// Message is one stored message as consumers see it.
type Message struct {
	ID          uint64
	ContentType string
	Body        string
	Deliveries  uint64  // times leased so far (pops do not count)
	Origin      *Origin // set on dead letters
	Group       string
	Attributes  []Attribute // shared with the state: read only
	// Enqueued is when the message was stored in its queue (cluster time
	// in ms, to the second; a dead letter was stored when it was moved, a
	// message restored from a snapshot older than version 4 when that
	// snapshot was taken).
	Enqueued int64
}

// EnqueueResult is Apply's result for an enqueue. Replay is true when the
// idempotency key was seen: nothing was stored and ID is the original's.
type EnqueueResult struct {
	ID     uint64
	Replay bool
}

// DequeueResult is Apply's result for a pop or a lease. Found is false when
// no message was ready. A lease sets Token and Expires, in cluster time
// (see FSM.Now): the lease has Expires − Now ms left, which is all that
// means something on a node's own clock.
type DequeueResult struct {
	Message Message
	Found   bool
	Token   string
	Expires int64
	Now     int64 // the state machine's clock when applied
}

// BatchResult is Apply's result for a batch enqueue: the ids, in order,
// and which items were replays of a remembered key (nil when none was).
type BatchResult struct {
	IDs    []uint64
	Replay []bool
}

// PopManyResult is Apply's result for a multiple pop, oldest first.
type PopManyResult struct {
	Messages []Message
	Now      int64 // the state machine's clock when applied
}

// LeaseManyResult is Apply's result for a lease many: the leases, in the
// order they were taken.
type LeaseManyResult struct {
	Leases []DequeueResult
	Now    int64
}

// LeaseResult is Apply's result for an extend: the new expiry, in cluster
// time, Expires − Now ms from when it was applied.
type LeaseResult struct {
	Expires int64
	Now     int64 // the state machine's clock when applied
}

// Done is Apply's result for an ack, a release, a configure, a tick, a
// queue deletion, a change of the cluster limits or of an alarm.
type Done struct{}

// QueueInfo describes one queue.
type QueueInfo struct {
	Name    string
	Depth   int // ready
	Leased  int
	Delayed int
}

// FSM holds every queue. The zero value is not usable; call New.
type FSM struct {
	queues map[string]*queue
	now    int64 // cluster time, ms (see advance)
	// clocks holds, by proposer id, how each proposer's stamps map onto
	// cluster time (at most MaxProposer entries).
	clocks []proposerClock
	// gen counts captures; records older than the last one are copied
	// before they change (see Capture).
	gen uint32
	// metas shares the meta of messages without origin by content type
	// (a few dozen bytes each, a million times over).
	metas map[string]*msgMeta

	limits ClusterLimits // MaxQueues and MaxBytes only (see Limits)
	bytes  int64         // what every queue's messages and keys cost
	// idFloor is the largest id any deleted queue handed out: new queues
	// start above it.
	idFloor uint64
	alarms  []uint64 // nodes out of disk space, ascending
}

// New returns an empty state machine with the default limits.
func New() *FSM {
	return &FSM{queues: make(map[string]*queue), metas: make(map[string]*msgMeta),
		limits: ClusterLimits{MaxQueues: DefaultMaxQueues, MaxBytes: DefaultMaxBytes}}
}

// maxShared bounds the content types whose meta is shared; messages of
// others get one of their own.
const maxShared = 256

// metaIn returns the meta of messages of content type ct, shared through
// shared while it holds fewer than maxShared.
func metaIn(shared map[string]*msgMeta, ct string) *msgMeta {
	if ct == "" {
		return nil
	}
	if m, ok := shared[ct]; ok {
		return m
	}
	m := &msgMeta{contentType: ct}
	if len(shared) < maxShared {
		shared[ct] = m
	}
	return m
}

// Now is the state machine's clock: cluster time in ms, which runs at the
// pace of real time but stands at no particular offset from any wall clock
// (it started at the first stamp, and stood still while every node was
// down). Only differences from Now mean something outside the FSM.
func (f *FSM) Now() int64 { return f.now }

// DeadLetterQueue is where queue moves messages delivered too often ("" if
// none), i.e. the other queue that taking from queue can change.
func (f *FSM) DeadLetterQueue(queue string) string {
	if q := f.queues[queue]; q != nil {
		return q.dlq
	}
	return ""
}

// SeqPosBits is how many low bits of Apply's seq give the command's
// position in its raft entry: an entry carries at most 1<<SeqPosBits
// commands.
const SeqPosBits = 16

// Apply executes one encoded command and returns one of the result types
// above, or an error wrapping ErrBadCommand, ErrInvalidName,
// ErrInvalidArg, ErrNoMessage, ErrLeaseLost, ErrKeyReused, ErrNoQueue,
// ErrQueueFull, ErrClusterFull or ErrNoSpace. seq must grow with each
// command; lease tokens are made from it. raftnode passes the entry's
// index << SeqPosBits | the command's position in the entry (0 for an
// entry of one command).
// Apply copies what it keeps, so cmd may be reused.
//
// Every command takes one shared step (decode, advance the clock, check
// the queue name and durations, expire the queue's leases, delays and
// keys), then its op's handler (see ops).
func (f *FSM) Apply(seq uint64, cmd []byte) any {
	c, err := DecodeCommand(cmd)
	if err != nil {
		return err
	}
	f.advance(c)
	x := call{Command: c, seq: seq, version: cmd[0]}
	op := ops[c.Op]
	if !op.cluster {
		if err := x.check(); err != nil {
			return err
		}
		if x.q = f.queues[c.Queue]; x.q != nil {
			f.expire(x.q)
		}
	}
	return op.apply(f, x)
}

// call is one command in Apply: decoded, with its version and the queue
// it names (nil while that queue does not exist).
type call struct {
	Command
	seq     uint64
	version byte
	q       *queue
}

// validName is the queue name rule of the command's version: versions 1
// and 2 accepted "." and "..", and an old log must replay as it applied.
func (c *call) validName(name string) error {
	if c.version < commandV3 {
		return validateNameV2(name)
	}
	return ValidateName(name)
}

// check is the shared validation of commands that name a queue.
func (c *call) check() error {
	if err := c.validName(c.Queue); err != nil {
		return err
	}
	if c.Delay < 0 || c.TTL < 0 {
		return fmt.Errorf("%w: negative duration", ErrInvalidArg)
	}
	return nil
}

// limited reports whether limits and alarms bind the command: commands of
// versions 1 to 3 were accepted before limits existed, and an old log
// must replay as it applied, whatever the limits now.
func (c *call) limited() bool { return c.version >= commandV4 }

// queue returns the queue named, made if need be: a new queue's ids start
// above every id a deleted queue handed out (idFloor), so a name used
// again never repeats an id of its earlier life.
func (f *FSM) queue(name string) *queue {
	q := f.queues[name]
	if q == nil {
		q = newQueue(name, f.idFloor)
		q.created, q.modified = f.now, f.now
		f.queues[name] = q
	}
	return q
}

// charge counts what a change of q's messages or keys costs, in q and in
// the cluster.
func (f *FSM) charge(q *queue, msgs, keys int64) {
	q.msgBytes += msgs
	q.keyBytes += keys
	f.bytes += msgs + keys
}

// expire makes expired leases and due delayed messages ready, and forgets
// idempotency keys past the window (as a keyed enqueue would first).
func (f *FSM) expire(q *queue) {
	q.forgetKeys(f)
	for len(q.timers) > 0 && q.timers[0].at <= f.now {
		t := heap.Pop(&q.timers).(timer)
		m := q.msgs.get(t.id)
		if m == nil || m.at != t.at || m.state == stateReady {
			continue // stale: acked, extended or released since
		}
		if m.state == stateLeased {
			q.leasedN--
		} else {
			q.delayedN--
		}
		q.leaseEnded(m)
		m = q.own(f, m)
		m.lease = 0
		m.state = stateReady
		q.fileReady(m)
	}
	q.dropExpired(f)
}

// Queues lists every queue, sorted by name. A queue is kept, empty or
// not, until it is deleted.
func (f *FSM) Queues() []QueueInfo {
	out := make([]QueueInfo, 0, len(f.queues))
	for _, name := range f.names() {
		q := f.queues[name]
		out = append(out, QueueInfo{Name: name, Depth: q.msgs.len() - q.leasedN - q.delayedN, Leased: q.leasedN, Delayed: q.delayedN})
	}
	return out
}

func (f *FSM) names() []string {
	names := make([]string, 0, len(f.queues))
	for name := range f.queues {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
