// Package queuefsm is raftq's replicated state: named FIFO queues.
//
// It is a pure value: no I/O, clocks, randomness, goroutines or locks. Every
// replica that applies the same commands in the same order ends in the same
// state and returns the same results, and Snapshot encodes that state
// deterministically so replicas can be compared byte for byte.
package queuefsm

import (
	"errors"
	"fmt"
	"sort"
)

// MaxQueueNameLen is the longest queue name accepted.
const MaxQueueNameLen = 128

// ErrInvalidName reports a queue name outside [A-Za-z0-9._-]{1,128}.
var ErrInvalidName = errors.New("queuefsm: invalid queue name")

// ValidateName reports whether name is a legal queue name.
func ValidateName(name string) error {
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

// Message is one stored message.
type Message struct {
	ID          uint64
	ContentType string
	Body        []byte
}

// EnqueueResult is Apply's result for an enqueue.
type EnqueueResult struct {
	ID uint64
}

// DequeueResult is Apply's result for a dequeue. Found is false when the
// queue was empty or did not exist.
type DequeueResult struct {
	Message Message
	Found   bool
}

// QueueInfo describes one queue.
type QueueInfo struct {
	Name  string
	Depth int
}

// FSM holds every queue. The zero value is not usable; call New.
type FSM struct {
	queues map[string]*queue
}

// New returns an empty state machine.
func New() *FSM {
	return &FSM{queues: make(map[string]*queue)}
}

// Apply executes one encoded command and returns EnqueueResult,
// DequeueResult, or an error wrapping ErrBadCommand or ErrInvalidName. The
// index is the raft log index; it is not needed by the queue rules today.
// Apply copies what it keeps, so cmd may be reused by the caller.
func (f *FSM) Apply(_ uint64, cmd []byte) any {
	c, err := DecodeCommand(cmd)
	if err != nil {
		return err
	}
	if err := ValidateName(c.Queue); err != nil {
		return err
	}
	switch c.Op {
	case OpEnqueue:
		return f.enqueue(c)
	default: // OpDequeue; DecodeCommand rejects every other op.
		return f.dequeue(c.Queue)
	}
}

func (f *FSM) enqueue(c Command) EnqueueResult {
	q := f.queues[c.Queue]
	if q == nil {
		q = &queue{}
		f.queues[c.Queue] = q
	}
	q.lastID++
	body := make([]byte, len(c.Body))
	copy(body, c.Body)
	q.push(Message{ID: q.lastID, ContentType: c.ContentType, Body: body})
	return EnqueueResult{ID: q.lastID}
}

func (f *FSM) dequeue(name string) DequeueResult {
	q := f.queues[name]
	if q == nil || q.len() == 0 {
		return DequeueResult{}
	}
	return DequeueResult{Message: q.pop(), Found: true}
}

// Queues lists every queue that has ever received a message, sorted by name.
// Queues are kept when empty so that their ids are never reused.
func (f *FSM) Queues() []QueueInfo {
	out := make([]QueueInfo, 0, len(f.queues))
	for _, name := range f.names() {
		out = append(out, QueueInfo{Name: name, Depth: f.queues[name].len()})
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

// queue is a FIFO of messages backed by a slice with a moving head.
type queue struct {
	lastID uint64 // highest id ever assigned; ids are never reused
	msgs   []Message
	head   int
}

func (q *queue) len() int { return len(q.msgs) - q.head }

func (q *queue) push(m Message) { q.msgs = append(q.msgs, m) }

func (q *queue) pop() Message {
	m := q.msgs[q.head]
	q.msgs[q.head] = Message{} // let the body be collected
	q.head++
	// Reclaim the consumed prefix once it is at least half the slice, so a
	// long-lived queue does not grow without bound.
	if q.head >= 1024 && q.head*2 >= len(q.msgs) {
		q.msgs = append([]Message(nil), q.msgs[q.head:]...)
		q.head = 0
	}
	return m
}

func (q *queue) items() []Message { return q.msgs[q.head:] }
