package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Message attribute limits (documented in the README), as SQS has them.
const (
	MaxAttributes    = 10
	MaxAttributeName = 256
	MaxGroupLen      = 128
)

// attributeName is what SQS allows in an attribute's name.
var attributeName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)

// ValidateAttributes checks attributes as SQS does: at most 10; names of
// 1 to 256 letters, digits, _ - and ., not starting or ending with a
// period, without two periods in a row, not starting with "AWS." or
// "Amazon."; types String, Number or Binary with an optional ".label" (256
// bytes in all); a Number a decimal number; a String valid UTF-8.
func ValidateAttributes(attrs []Attribute) error {
	if len(attrs) > MaxAttributes {
		return fmt.Errorf("%w: %d message attributes, at most %d", ErrInvalid, len(attrs), MaxAttributes)
	}
	for i, a := range attrs {
		n := a.Name
		lower := strings.ToLower(n)
		if !attributeName.MatchString(n) || n[0] == '.' || n[len(n)-1] == '.' || strings.Contains(n, "..") ||
			strings.HasPrefix(lower, "aws.") || strings.HasPrefix(lower, "amazon.") {
			return fmt.Errorf("%w: message attribute name %q: 1 to %d of A-Z a-z 0-9 _ - ., no leading, trailing or double period, no AWS. or Amazon. prefix",
				ErrInvalid, n, MaxAttributeName)
		}
		if slices.ContainsFunc(attrs[:i], func(b Attribute) bool { return b.Name == n }) {
			return fmt.Errorf("%w: message attribute %q twice", ErrInvalid, n)
		}
		base, _, _ := strings.Cut(a.Type, ".")
		if len(a.Type) > MaxAttributeName || base != "String" && base != "Number" && base != "Binary" {
			return fmt.Errorf("%w: message attribute %q: type %q must be String, Number or Binary, with an optional .label", ErrInvalid, n, a.Type)
		}
		switch base {
		case "Number":
			if _, err := strconv.ParseFloat(a.Value, 64); err != nil {
				return fmt.Errorf("%w: message attribute %q: %q is not a number", ErrInvalid, n, a.Value)
			}
		case "String":
			if !utf8.ValidString(a.Value) {
				return fmt.Errorf("%w: message attribute %q: a String must be UTF-8", ErrInvalid, n)
			}
		}
	}
	return nil
}

// ValidateGroup checks a message group id as SQS does: 1 to 128 of
// printable ASCII without space.
func ValidateGroup(g string) error {
	if len(g) == 0 || len(g) > MaxGroupLen {
		return fmt.Errorf("%w: message group must be 1 to %d characters", ErrInvalid, MaxGroupLen)
	}
	for i := 0; i < len(g); i++ {
		if g[i] < 0x21 || g[i] > 0x7e {
			return fmt.Errorf("%w: message group has byte %#x at %d; allowed is printable ASCII without space", ErrInvalid, g[i], i)
		}
	}
	return nil
}

// attributeJSON is an attribute's value as raftq's API writes it; a plain
// JSON string is read as a String. Binary values are base64.
type attributeJSON struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// decodeAttributes reads a JSON object of attributes, sorted by name.
func decodeAttributes(raw json.RawMessage) ([]Attribute, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: message attributes must be a JSON object: %v", ErrInvalid, err)
	}
	var out []Attribute
	for name, v := range m {
		a := Attribute{Name: name, Type: "String"}
		var aj attributeJSON
		if err := json.Unmarshal(v, &a.Value); err != nil {
			if err := json.Unmarshal(v, &aj); err != nil || aj.Type == "" {
				return nil, fmt.Errorf("%w: message attribute %q must be a string or {\"type\":…,\"value\":…}", ErrInvalid, name)
			}
			a.Type, a.Value = aj.Type, aj.Value
			if strings.HasPrefix(aj.Type, "Binary") {
				b, err := base64.StdEncoding.DecodeString(aj.Value)
				if err != nil {
					return nil, fmt.Errorf("%w: message attribute %q: a Binary value is base64: %v", ErrInvalid, name, err)
				}
				a.Value = string(b)
			}
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Attribute) int { return strings.Compare(a.Name, b.Name) })
	return out, ValidateAttributes(out)
}

// encodeAttributes writes attributes as decodeAttributes reads them, in
// ASCII only (it goes in a header too).
func encodeAttributes(attrs []Attribute) json.RawMessage {
	m := make(map[string]attributeJSON, len(attrs))
	for _, a := range attrs {
		v := a.Value
		if strings.HasPrefix(a.Type, "Binary") {
			v = base64.StdEncoding.EncodeToString([]byte(v))
		}
		m[a.Name] = attributeJSON{Type: a.Type, Value: v}
	}
	b, _ := json.Marshal(m) // maps of strings always marshal
	return asciiJSON(b)
}

// asciiJSON escapes JSON's non-ASCII characters as \u sequences.
func asciiJSON(b []byte) []byte {
	var out []byte
	for _, r := range string(b) {
		switch {
		case r < utf8.RuneSelf:
			out = append(out, byte(r))
		case r > 0xffff:
			r1, r2 := utf16Pair(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
	}
	return out
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}

// messageOptions reads the headers of an enqueue beyond its body:
// Idempotency-Key, Delay, Message-Group and Message-Attributes.
func messageOptions(r *http.Request) (EnqueueOptions, error) {
	opts := EnqueueOptions{IdempotencyKey: r.Header.Get("Idempotency-Key")}
	if d := r.Header.Get("Delay"); d != "" {
		var err error
		if opts.Delay, err = duration(d, "Delay", 0, 0, MaxDelay); err != nil {
			return opts, err
		}
		opts.DelaySet = true
	}
	if g, ok := r.Header["Message-Group"]; ok {
		if err := ValidateGroup(g[0]); err != nil {
			return opts, err
		}
		opts.Group = g[0]
	}
	if h := r.Header.Get("Message-Attributes"); h != "" {
		var err error
		if opts.Attributes, err = decodeAttributes(json.RawMessage(h)); err != nil {
			return opts, fmt.Errorf("Message-Attributes: %w", err)
		}
	}
	return opts, nil
}

// withDefaults gives an enqueue without a Delay the delay_ms of its
// queue's config cfg.
func withDefaults(cfg QueueConfig, opts EnqueueOptions) EnqueueOptions {
	if !opts.DelaySet && cfg.DelayMS > 0 {
		opts.Delay = min(time.Duration(cfg.DelayMS)*time.Millisecond, MaxDelay)
	}
	return opts
}
