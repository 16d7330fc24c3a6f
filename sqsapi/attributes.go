package sqsapi

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/raftq/raftq/httpapi"
)

// messageAttribute is a message attribute as the JSON protocol carries it
// (a Binary value is base64 in JSON).
type messageAttribute struct {
	DataType    string `json:"DataType"`
	StringValue string `json:"StringValue,omitempty"`
	BinaryValue []byte `json:"BinaryValue,omitempty"`
}

// attributesIn reads a send's MessageAttributes, sorted by name, checked
// as SQS checks them (httpapi.ValidateAttributes).
func attributesIn(in map[string]messageAttribute) ([]httpapi.Attribute, error) {
	out := make([]httpapi.Attribute, 0, len(in))
	for name, a := range in {
		v := a.StringValue
		if strings.HasPrefix(a.DataType, "Binary") {
			if a.StringValue != "" {
				return nil, errInvalidParameter(fmt.Sprintf("message attribute %s: a Binary attribute has a BinaryValue", name))
			}
			v = string(a.BinaryValue)
		} else if len(a.BinaryValue) > 0 {
			return nil, errInvalidParameter(fmt.Sprintf("message attribute %s: a %s attribute has a StringValue", name, a.DataType))
		}
		if v == "" {
			return nil, errInvalidParameter(fmt.Sprintf("message attribute %s has no value", name))
		}
		out = append(out, httpapi.Attribute{Name: name, Type: a.DataType, Value: v})
	}
	slices.SortFunc(out, func(a, b httpapi.Attribute) int { return strings.Compare(a.Name, b.Name) })
	if err := httpapi.ValidateAttributes(out); err != nil {
		return nil, errInvalidParameter(strings.TrimPrefix(err.Error(), httpapi.ErrInvalid.Error()+": "))
	}
	return out, nil
}

// attributesMD5 is SQS's MD5OfMessageAttributes: over the attributes
// sorted by name, each as its name, its data type (both length-prefixed,
// 4 bytes big-endian), a transport byte (1 for String and Number, 2 for
// Binary) and its length-prefixed value. "" when there are none.
func attributesMD5(attrs []httpapi.Attribute) string {
	if len(attrs) == 0 {
		return ""
	}
	sorted := slices.Clone(attrs)
	slices.SortFunc(sorted, func(a, b httpapi.Attribute) int { return strings.Compare(a.Name, b.Name) })
	var b []byte
	field := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	for _, a := range sorted {
		field(a.Name)
		field(a.Type)
		if strings.HasPrefix(a.Type, "Binary") {
			b = append(b, 2)
		} else {
			b = append(b, 1)
		}
		field(a.Value)
	}
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// attributesOut are the attributes a receive asked for by
// MessageAttributeNames ("All", ".*", names, and "prefix.*").
func attributesOut(attrs []httpapi.Attribute, names []string) []httpapi.Attribute {
	var out []httpapi.Attribute
	for _, a := range attrs {
		for _, n := range names {
			if n == "All" || n == ".*" || n == a.Name || strings.HasSuffix(n, ".*") && strings.HasPrefix(a.Name, strings.TrimSuffix(n, "*")) {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

func attributesJSON(attrs []httpapi.Attribute) map[string]messageAttribute {
	out := make(map[string]messageAttribute, len(attrs))
	for _, a := range attrs {
		m := messageAttribute{DataType: a.Type}
		if strings.HasPrefix(a.Type, "Binary") {
			m.BinaryValue = []byte(a.Value)
		} else {
			m.StringValue = a.Value
		}
		out[a.Name] = m
	}
	return out
}

// systemAttributes are the message system attributes asked for that raftq
// knows: SentTimestamp (to the second), ApproximateReceiveCount,
// SenderId, and in FIFO queues MessageGroupId and SequenceNumber.
// ApproximateFirstReceiveTimestamp and MessageDeduplicationId are not
// kept, so not answered.
func systemAttributes(want map[string]bool, l httpapi.Lease) map[string]string {
	out := map[string]string{}
	all := want["All"]
	if all || want["ApproximateReceiveCount"] {
		out["ApproximateReceiveCount"] = strconv.FormatUint(l.Message.Deliveries, 10)
	}
	if all || want["SenderId"] {
		out["SenderId"] = "raftq"
	}
	if t := l.Message.Enqueued; !t.IsZero() && (all || want["SentTimestamp"]) {
		out["SentTimestamp"] = strconv.FormatInt(t.UnixMilli(), 10)
	}
	if g := l.Message.Group; g != "" {
		if all || want["MessageGroupId"] {
			out["MessageGroupId"] = g
		}
		if all || want["SequenceNumber"] {
			out["SequenceNumber"] = sequenceNumber(l.Message.ID)
		}
	}
	return out
}

// sequenceNumber is a FIFO message's SequenceNumber: its raftq id, which
// grows within the queue, in 20 digits.
func sequenceNumber(id uint64) string { return fmt.Sprintf("%020d", id) }

// contentDedupID is ContentBasedDeduplication's id: the SHA-256 of the
// body, in hex.
func contentDedupID(body string) string {
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:])
}
