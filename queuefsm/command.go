package queuefsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Command versions, the first byte of every encoded command. Older
// versions are still read, so old logs replay as they applied: version 1
// (no time) from before leases, version 2 (time, no proposer) from before
// the clock followed each proposer's run; both decode with Proposer 0.
// Version 3 adds Proposer and Epoch after Time. Version 4 has the header
// of version 3 and adds the ops from OpDeleteQueue on, the limits of a
// configure, and the rule that limits and alarms bind enqueues and
// batches (those of versions 1 to 3 were accepted before limits existed,
// and replay so). Encode writes each op in the version whose rules it
// follows: version 4 for those ops, enqueue, batch and configure, version
// 3 for the others, whose meaning has not changed. A replica that meets an
// unknown version refuses it deterministically, as versions 1 to 3 refuse
// the ops of version 4. Version 5 has the header of version 4 and carries
// more in three ops: an enqueue and each batch item have a group, message
// attributes and a flags byte (FlagDedupe), a batch item its own
// idempotency key and delay, and a configure names its fields in a uvarint
// and carries the queue's SQS-style settings (visibility timeout, delay,
// receive wait, maximum message size, retention, content deduplication).
// Encode writes those three ops in version 5.
const (
	commandV1      = 1
	commandV2      = 2
	commandV3      = 3
	commandV4      = 4
	commandVersion = 5
)

// Op names a state-machine operation.
type Op byte

const (
	OpEnqueue   Op = 1  // append a message (optionally delayed, idempotent)
	OpDequeue   Op = 2  // remove and return the head (at-most-once pop)
	OpLease     Op = 3  // lease the head for TTL
	OpAck       Op = 4  // remove a leased message for good
	OpRelease   Op = 5  // give a leased message back (after Delay)
	OpExtend    Op = 6  // extend a lease to now + TTL
	OpConfigure Op = 7  // set MaxDeliveries, DeadLetterQueue, MaxMessages, MaxBytes (see Fields)
	OpTick      Op = 8  // only advance the clock (expire leases, delays)
	OpBatch     Op = 9  // append several messages, all or nothing
	OpPopMany   Op = 10 // pop up to Max messages at once
	// From version 4 on:
	OpDeleteQueue Op = 11 // remove a queue with its messages, keys and config
	OpPurge       Op = 12 // drop a queue's ready and delayed messages
	OpSetLimits   Op = 13 // set the cluster's MaxQueues and MaxBytes
	OpAlarm       Op = 14 // raise or clear Node's disk space alarm
	// From version 5 on:
	OpLeaseMany Op = 15 // lease up to Max messages for TTL
)

var opNames = [...]string{OpEnqueue: "enqueue", OpDequeue: "dequeue", OpLease: "lease", OpAck: "ack",
	OpRelease: "release", OpExtend: "extend", OpConfigure: "configure", OpTick: "tick", OpBatch: "batch",
	OpPopMany: "pop many", OpDeleteQueue: "delete queue", OpPurge: "purge", OpSetLimits: "set limits", OpAlarm: "alarm", OpLeaseMany: "lease many"}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("op %d", byte(o))
}

// version is the command version Encode writes for the op (see
// commandVersion).
func (o Op) version() byte {
	switch o {
	case OpEnqueue, OpBatch, OpConfigure, OpLeaseMany:
		return commandVersion
	case OpDeleteQueue, OpPurge, OpSetLimits, OpAlarm:
		return commandV4
	}
	return commandV3
}

// Fields names the fields a configure or a set-limits command sets; the
// others keep their value. 0 sets every field the op had in version 4
// (configure: the four queue fields from FieldMaxDeliveries to
// FieldMaxBytes; set limits: both cluster limits), which is what a
// configure of versions 2 and 3 does. FieldMaxBytes is the queue's limit
// in a configure, the cluster's in a set-limits. The fields from
// FieldVisibility on are configure's from version 5 on.
type Fields uint16

const (
	FieldMaxDeliveries Fields = 1 << iota
	FieldDeadLetterQueue
	FieldMaxMessages
	FieldMaxBytes
	FieldMaxQueues
	FieldVisibility     // the lease TTL a consumer gets when it names none
	FieldDelay          // the delay an enqueue gets when it names none
	FieldReceiveWait    // the long-poll wait a receive gets when it names none
	FieldMaxMessageSize // the largest message (body and attributes) stored
	FieldRetention      // how long a message is kept before it is dropped
	FieldContentDedup   // SQS's ContentBasedDeduplication
)

// Flags of an enqueue or a batch item (version 5 on).
const (
	// FlagDedupe: an idempotency key that comes back with another message
	// answers the original's id, as SQS's deduplication does, instead of
	// ErrKeyReused.
	FlagDedupe byte = 1 << iota
)

// Attribute is a message attribute, as SQS has them: a name, a data type
// ("String", "Number", "Binary", each with an optional ".label") and the
// value's bytes. queuefsm checks only counts and lengths; the APIs check
// the rest.
type Attribute struct {
	Name, Type, Value string
}

// MaxBatch is the most messages one batch enqueue or pop may carry.
const MaxBatch = 1000

// BatchItem is one message of a batch enqueue. The fields after Body are
// carried from version 5 on.
type BatchItem struct {
	ContentType    string
	Body           string
	IdempotencyKey string
	Delay          int64 // milliseconds
	Flags          byte
	Group          string
	Attributes     []Attribute
}

// Command is a decoded state-machine operation. Time is the proposer's
// stamp in Unix milliseconds (for a node, its wall clock read at start
// plus the monotonic time since); the other fields are used per Op.
type Command struct {
	Op   Op
	Time int64
	// Proposer is the node that stamped Time (1 to MaxProposer; 0: none,
	// the rule of versions 1 and 2), Epoch names that node's run (its
	// start, Unix ms): the clock moves by how far one run's stamps
	// advance, not by where they stand (see FSM.advance).
	Proposer        uint64
	Epoch           int64
	Queue           string
	ContentType     string      // enqueue
	IdempotencyKey  string      // enqueue
	Delay           int64       // enqueue, release: milliseconds
	TTL             int64       // lease, extend: milliseconds
	ID              uint64      // ack, release, extend
	Token           string      // ack, release, extend
	MaxDeliveries   uint64      // configure
	DeadLetterQueue string      // configure
	Body            []byte      // enqueue
	Items           []BatchItem // batch
	Max             uint64      // pop many, lease many
	MaxMessages     int64       // configure: the queue's limit, 0 for none
	MaxBytes        int64       // configure: the queue's limit; set limits: the cluster's; 0 for none
	MaxQueues       int64       // set limits: 0 for none
	Fields          Fields      // configure, set limits: what they set (0: all)
	Node            uint64      // alarm: the node whose disk it is
	Raise           bool        // alarm: raise it (false: clear it)
	// From version 5 on, an enqueue's:
	Flags      byte        // FlagDedupe
	Group      string      // the message's group ("" for none; see queue.groups)
	Attributes []Attribute // the message's attributes
	// and a configure's (milliseconds, 0 for the default or for none):
	Config QueueSettings
}

// ErrBadCommand reports a command that cannot be decoded. Apply returns it as
// its (deterministic) result; it never panics on input.
var ErrBadCommand = errors.New("queuefsm: malformed command")

// Encode returns the command's bytes.
func (c Command) Encode() []byte { return c.encodeIn(c.Op.version()) }

// encodeIn writes the command in version v, 3 to commandVersion, leaving
// out what v does not carry (tests write old logs with it).
func (c Command) encodeIn(v byte) []byte {
	b := make([]byte, 0, 32+len(c.Queue)+len(c.ContentType)+len(c.IdempotencyKey)+len(c.Token)+len(c.DeadLetterQueue)+len(c.Body))
	b = append(b, v, byte(c.Op))
	b = binary.AppendVarint(b, c.Time)
	b = binary.AppendUvarint(b, c.Proposer)
	b = binary.AppendVarint(b, c.Epoch)
	b = appendString(b, c.Queue)
	switch c.Op {
	case OpEnqueue:
		b = appendString(b, c.ContentType)
		b = appendString(b, c.IdempotencyKey)
		b = binary.AppendVarint(b, c.Delay)
		if v >= commandVersion {
			b = appendExtras(b, c.Flags, c.Group, c.Attributes)
		}
		b = append(b, c.Body...)
	case OpLease:
		b = binary.AppendVarint(b, c.TTL)
	case OpLeaseMany:
		b = binary.AppendVarint(b, c.TTL)
		b = binary.AppendUvarint(b, c.Max)
	case OpAck:
		b = binary.AppendUvarint(b, c.ID)
		b = appendString(b, c.Token)
	case OpRelease:
		b = binary.AppendUvarint(b, c.ID)
		b = appendString(b, c.Token)
		b = binary.AppendVarint(b, c.Delay)
	case OpExtend:
		b = binary.AppendUvarint(b, c.ID)
		b = appendString(b, c.Token)
		b = binary.AppendVarint(b, c.TTL)
	case OpConfigure:
		b = binary.AppendUvarint(b, c.MaxDeliveries)
		b = appendString(b, c.DeadLetterQueue)
		if v < commandVersion {
			b = append(b, byte(c.Fields))
		} else {
			b = binary.AppendUvarint(b, uint64(c.Fields))
		}
		b = binary.AppendVarint(b, c.MaxMessages)
		b = binary.AppendVarint(b, c.MaxBytes)
		if v >= commandVersion {
			b = c.Config.append(b)
		}
	case OpSetLimits:
		b = append(b, byte(c.Fields))
		b = binary.AppendVarint(b, c.MaxQueues)
		b = binary.AppendVarint(b, c.MaxBytes)
	case OpAlarm:
		b = binary.AppendUvarint(b, c.Node)
		b = append(b, boolByte(c.Raise))
	case OpBatch:
		b = binary.AppendUvarint(b, uint64(len(c.Items)))
		for _, it := range c.Items {
			b = appendString(b, it.ContentType)
			b = appendString(b, it.Body)
			if v >= commandVersion {
				b = appendString(b, it.IdempotencyKey)
				b = binary.AppendVarint(b, it.Delay)
				b = appendExtras(b, it.Flags, it.Group, it.Attributes)
			}
		}
	case OpPopMany:
		b = binary.AppendUvarint(b, c.Max)
	}
	return b
}

// EncodeEnqueue returns the command that appends body to queue, stamped
// with no time (tests and tools; the server stamps its proposals).
func EncodeEnqueue(queue, contentType string, body []byte) []byte {
	return Command{Op: OpEnqueue, Queue: queue, ContentType: contentType, Body: body}.Encode()
}

// EncodeDequeue returns the command that removes the head of queue.
func EncodeDequeue(queue string) []byte {
	return Command{Op: OpDequeue, Queue: queue}.Encode()
}

// DecodeCommand parses an encoded command. The returned Body aliases cmd.
func DecodeCommand(cmd []byte) (Command, error) {
	if len(cmd) < 2 {
		return Command{}, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(cmd))
	}
	switch cmd[0] {
	case commandV1:
		return decodeV1(cmd)
	case commandV2, commandV3, commandV4, commandVersion:
	default:
		return Command{}, fmt.Errorf("%w: version %d", ErrBadCommand, cmd[0])
	}
	v := cmd[0]
	r := &reader{b: cmd[2:]}
	c := Command{Op: Op(cmd[1])}
	if c.Op > OpPopMany && v < commandV4 || c.Op > OpAlarm && v < commandVersion {
		return Command{}, fmt.Errorf("%w: op %d in version %d", ErrBadCommand, c.Op, cmd[0])
	}
	c.Time, c.Proposer, c.Epoch = r.header(cmd[0])
	c.Queue = r.string()
	if c.Proposer > MaxProposer {
		return Command{}, fmt.Errorf("%w: proposer %d over %d", ErrBadCommand, c.Proposer, MaxProposer)
	}
	switch c.Op {
	case OpEnqueue:
		c.ContentType, c.IdempotencyKey, c.Delay = r.string(), r.string(), r.varint()
		if v >= commandVersion {
			c.Flags, c.Group, c.Attributes = r.extras()
		}
		c.Body, r.b = r.b, nil
	case OpDequeue, OpTick, OpDeleteQueue, OpPurge:
	case OpLease:
		c.TTL = r.varint()
	case OpLeaseMany:
		c.TTL, c.Max = r.varint(), r.uvarint()
	case OpAck:
		c.ID, c.Token = r.uvarint(), r.string()
	case OpRelease:
		c.ID, c.Token, c.Delay = r.uvarint(), r.string(), r.varint()
	case OpExtend:
		c.ID, c.Token, c.TTL = r.uvarint(), r.string(), r.varint()
	case OpConfigure:
		c.MaxDeliveries, c.DeadLetterQueue = r.uvarint(), r.string()
		switch {
		case v >= commandVersion:
			c.Fields, c.MaxMessages, c.MaxBytes = r.fields(), r.varint(), r.varint()
			c.Config = r.settings()
		case len(r.b) > 0: // versions 2 and 3 end here (Encode always wrote the limits since)
			c.Fields, c.MaxMessages, c.MaxBytes = Fields(r.byte()), r.varint(), r.varint()
		}
	case OpSetLimits:
		c.Fields, c.MaxQueues, c.MaxBytes = Fields(r.byte()), r.varint(), r.varint()
	case OpAlarm:
		c.Node, c.Raise = r.uvarint(), r.bool()
	case OpBatch:
		n := r.uvarint()
		if n > MaxBatch {
			return Command{}, fmt.Errorf("%w: batch of %d", ErrBadCommand, n)
		}
		c.Items = make([]BatchItem, 0, n)
		for ; n > 0 && r.err == nil; n-- {
			it := BatchItem{ContentType: r.string(), Body: string(r.aliased())}
			if v >= commandVersion {
				it.IdempotencyKey, it.Delay = r.string(), r.varint()
				it.Flags, it.Group, it.Attributes = r.extras()
			}
			c.Items = append(c.Items, it)
		}
	case OpPopMany:
		c.Max = r.uvarint()
	default:
		return Command{}, fmt.Errorf("%w: op %d", ErrBadCommand, c.Op)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return Command{}, fmt.Errorf("%w: %w", ErrBadCommand, r.err)
	}
	return c, nil
}

// decodeV1 reads the first format: enqueue and dequeue without time.
func decodeV1(cmd []byte) (Command, error) {
	c := Command{Op: Op(cmd[1])}
	rest := cmd[2:]
	var err error
	if c.Queue, rest, err = readString(rest); err != nil {
		return Command{}, err
	}
	switch c.Op {
	case OpEnqueue:
		if c.ContentType, rest, err = readString(rest); err != nil {
			return Command{}, err
		}
		c.Body = rest
	case OpDequeue:
		if len(rest) != 0 {
			return Command{}, fmt.Errorf("%w: %d trailing bytes", ErrBadCommand, len(rest))
		}
	default:
		return Command{}, fmt.Errorf("%w: op %d", ErrBadCommand, c.Op)
	}
	return c, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, fmt.Errorf("%w: bad string length", ErrBadCommand)
	}
	end := k + int(n)
	return string(b[k:end]), b[end:], nil
}

// QueueOf reads the queue a command is about, and whether it is a tick,
// from its header only (it runs beside Apply on every entry).
func QueueOf(cmd []byte) (queue string, tick bool) {
	if len(cmd) < 2 {
		return "", false
	}
	r := &reader{b: cmd[2:]}
	switch cmd[0] {
	case commandV1:
	case commandV2, commandV3, commandV4, commandVersion:
		r.header(cmd[0])
	default:
		return "", false
	}
	return r.string(), cmd[0] != commandV1 && Op(cmd[1]) == OpTick
}

// OpOf reads a command's op from its header (0 if it has none), e.g. to
// answer the consumers waiting on a queue that a command deleted.
func OpOf(cmd []byte) Op {
	if len(cmd) < 2 {
		return 0
	}
	return Op(cmd[1])
}

// header reads the fields between the op and the queue: the time, and from
// version 3 on the proposer and its epoch.
func (r *reader) header(version byte) (time int64, proposer uint64, epoch int64) {
	time = r.varint()
	if version >= commandV3 {
		proposer, epoch = r.uvarint(), r.varint()
	}
	return time, proposer, epoch
}

// reader decodes fields, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errors.New("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bool reads a byte that must be 0 or 1.
func (r *reader) bool() bool {
	switch b := r.byte(); b {
	case 0, 1:
		return b == 1
	default:
		if r.err == nil {
			r.err = fmt.Errorf("bool byte %d", b)
		}
		return false
	}
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = errors.New("truncated")
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) string() string {
	if r.err != nil {
		return ""
	}
	s, rest, err := readString(r.b)
	if err != nil {
		r.err = err
		return ""
	}
	r.b = rest
	return s
}

// aliased reads a length-prefixed byte string; the result aliases the
// command.
func (r *reader) aliased() []byte {
	if r.err != nil {
		return nil
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)-k) {
		r.err = errors.New("bad byte string length")
		return nil
	}
	end := k + int(n)
	out := r.b[k:end:end]
	r.b = r.b[end:]
	return out
}
