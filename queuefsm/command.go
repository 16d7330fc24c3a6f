package queuefsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// commandVersion is the first byte of every encoded command. A replica that
// meets an unknown version refuses it deterministically rather than guessing.
const commandVersion = 1

// Op names a state-machine operation.
type Op byte

const (
	OpEnqueue Op = 1
	OpDequeue Op = 2
)

// Command is a decoded state-machine operation.
type Command struct {
	Op          Op
	Queue       string
	ContentType string // enqueue only
	Body        []byte // enqueue only
}

// ErrBadCommand reports a command that cannot be decoded. Apply returns it as
// its (deterministic) result; it never panics on input.
var ErrBadCommand = errors.New("queuefsm: malformed command")

// EncodeEnqueue returns the command that appends body to queue.
func EncodeEnqueue(queue, contentType string, body []byte) []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(queue)+len(contentType)+len(body))
	b = append(b, commandVersion, byte(OpEnqueue))
	b = appendString(b, queue)
	b = appendString(b, contentType)
	return append(b, body...)
}

// EncodeDequeue returns the command that removes the head of queue.
func EncodeDequeue(queue string) []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen64+len(queue))
	b = append(b, commandVersion, byte(OpDequeue))
	return appendString(b, queue)
}

// DecodeCommand parses an encoded command. The returned Body aliases cmd.
func DecodeCommand(cmd []byte) (Command, error) {
	if len(cmd) < 2 {
		return Command{}, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(cmd))
	}
	if cmd[0] != commandVersion {
		return Command{}, fmt.Errorf("%w: version %d", ErrBadCommand, cmd[0])
	}
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
