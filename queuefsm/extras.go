package queuefsm

import (
	"encoding/binary"
	"fmt"
)

// Limits of what a message carries besides its body (version 5 on).
const (
	MaxAttributes       = 10  // attributes per message, as SQS
	MaxAttributeNameLen = 256 // bytes, as SQS
	MaxAttributeTypeLen = 256 // bytes, as SQS
	MaxGroupLen         = 128 // bytes of printable ASCII, as SQS's MessageGroupId
)

// QueueSettings are a queue's SQS-style settings, set by a configure of
// version 5 (in milliseconds where they are times; 0 for none, i.e. the
// API's own default). Visibility, Delay and ReceiveWait are defaults the
// APIs apply when a request names none (they are here so that every node
// reads the same ones); MaxMessageSize and Retention bind every replica:
// a larger message is refused (ErrTooLarge), and a message stored longer
// than Retention is dropped, leased or not.
type QueueSettings struct {
	Visibility     int64
	Delay          int64
	ReceiveWait    int64
	MaxMessageSize int64 // bytes: body plus attributes (see MessageSize)
	Retention      int64
	ContentDedup   bool
}

func (s QueueSettings) append(b []byte) []byte {
	for _, v := range s.list() {
		b = binary.AppendVarint(b, v)
	}
	return append(b, boolByte(s.ContentDedup))
}

func (s QueueSettings) list() []int64 {
	return []int64{s.Visibility, s.Delay, s.ReceiveWait, s.MaxMessageSize, s.Retention}
}

func (r *reader) settings() QueueSettings {
	s := QueueSettings{Visibility: r.varint(), Delay: r.varint(), ReceiveWait: r.varint(),
		MaxMessageSize: r.varint(), Retention: r.varint()}
	s.ContentDedup = r.bool()
	return s
}

// set copies into s the settings that set names from c.
func (s *QueueSettings) set(c QueueSettings, set Fields) {
	if set&FieldVisibility != 0 {
		s.Visibility = c.Visibility
	}
	if set&FieldDelay != 0 {
		s.Delay = c.Delay
	}
	if set&FieldReceiveWait != 0 {
		s.ReceiveWait = c.ReceiveWait
	}
	if set&FieldMaxMessageSize != 0 {
		s.MaxMessageSize = c.MaxMessageSize
	}
	if set&FieldRetention != 0 {
		s.Retention = c.Retention
	}
	if set&FieldContentDedup != 0 {
		s.ContentDedup = c.ContentDedup
	}
}

func (s QueueSettings) check() error {
	for _, v := range s.list() {
		if v < 0 {
			return fmt.Errorf("%w: negative setting %d", ErrInvalidArg, v)
		}
	}
	return nil
}

func (r *reader) fields() Fields {
	v := r.uvarint()
	if v > 0xffff && r.err == nil {
		r.err = fmt.Errorf("fields %#x", v)
	}
	return Fields(v)
}

// appendExtras writes what version 5 adds to an enqueue or a batch item.
func appendExtras(b []byte, flags byte, group string, attrs []Attribute) []byte {
	b = append(b, flags)
	b = appendString(b, group)
	b = binary.AppendUvarint(b, uint64(len(attrs)))
	for _, a := range attrs {
		b = appendString(b, a.Name)
		b = appendString(b, a.Type)
		b = appendString(b, a.Value)
	}
	return b
}

func (r *reader) extras() (flags byte, group string, attrs []Attribute) {
	flags, group = r.byte(), r.string()
	n := r.uvarint()
	if n > MaxAttributes {
		if r.err == nil {
			r.err = fmt.Errorf("%d attributes", n)
		}
		return
	}
	for ; n > 0 && r.err == nil; n-- {
		attrs = append(attrs, Attribute{Name: r.string(), Type: r.string(), Value: r.string()})
	}
	return flags, group, attrs
}

// checkExtras validates a message's flags, group and attributes: at most
// MaxAttributes, names unique, names and types 1 to their bounds, a group
// of at most MaxGroupLen printable ASCII bytes.
func checkExtras(flags byte, group string, attrs []Attribute) error {
	if flags&^FlagDedupe != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrInvalidArg, flags)
	}
	if len(group) > MaxGroupLen {
		return fmt.Errorf("%w: group is longer than %d bytes", ErrInvalidArg, MaxGroupLen)
	}
	for i := 0; i < len(group); i++ {
		if group[i] < 0x21 || group[i] > 0x7e {
			return fmt.Errorf("%w: group has byte %#x at %d; allowed is printable ASCII without space", ErrInvalidArg, group[i], i)
		}
	}
	if len(attrs) > MaxAttributes {
		return fmt.Errorf("%w: %d attributes, at most %d", ErrInvalidArg, len(attrs), MaxAttributes)
	}
	for i, a := range attrs {
		if len(a.Name) == 0 || len(a.Name) > MaxAttributeNameLen || len(a.Type) == 0 || len(a.Type) > MaxAttributeTypeLen {
			return fmt.Errorf("%w: attribute %d: name and type must be 1 to %d bytes", ErrInvalidArg, i, MaxAttributeNameLen)
		}
		for _, b := range attrs[:i] {
			if b.Name == a.Name {
				return fmt.Errorf("%w: attribute %q twice", ErrInvalidArg, a.Name)
			}
		}
	}
	return nil
}

// MessageSize is what a message's size is for MaxMessageSize: its body and
// its attributes' names, types and values, as SQS counts them.
func MessageSize(bodyLen int, attrs []Attribute) int64 {
	n := int64(bodyLen)
	for _, a := range attrs {
		n += int64(len(a.Name) + len(a.Type) + len(a.Value))
	}
	return n
}

// Cost is what a message counts for against max_bytes: MessageCost, plus
// its group and attributes.
func Cost(contentType string, bodyLen int, group string, attrs []Attribute) int64 {
	return MessageCost(contentType, 0) + MessageSize(bodyLen, attrs) + int64(len(group))
}
