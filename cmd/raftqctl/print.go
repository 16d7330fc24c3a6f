package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// print writes v as JSON with -o json, else the table rows: a header,
// then one row per entry, columns aligned.
func (a *app) print(v any, header []string, rows [][]string) error {
	if a.output == "json" {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

// short is a body as a table shows it: text up to 40 characters, "…"
// past that, or its size when it is not text.
func short(b []byte) string {
	if !utf8.Valid(b) {
		return fmt.Sprintf("(%d bytes)", len(b))
	}
	s := strings.Join(strings.Fields(string(b)), " ")
	if r := []rune(s); len(r) > 40 {
		return string(r[:39]) + "…"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

// messageJSON is a message as -o json shows it: the body as text when it
// is UTF-8, else base64 (body_b64).
type messageJSON struct {
	ID          uint64              `json:"id"`
	Body        *string             `json:"body,omitempty"`
	BodyB64     []byte              `json:"body_b64,omitempty"`
	ContentType string              `json:"content_type,omitempty"`
	Group       string              `json:"group,omitempty"`
	Attributes  map[string]attrJSON `json:"attributes,omitempty"`
	Deliveries  uint64              `json:"deliveries,omitempty"`
	Enqueued    *time.Time          `json:"enqueued_at,omitempty"`
	Token       string              `json:"lease_token,omitempty"`
	Expires     *time.Time          `json:"lease_expires,omitempty"`
}

// attrJSON is an attribute as -o json shows it (a Binary value base64,
// as encoding/json writes bytes).
type attrJSON struct {
	Type        string `json:"type"`
	Value       string `json:"value,omitempty"`
	BinaryValue []byte `json:"binary_value,omitempty"`
}

func bodyJSON(b []byte) (*string, []byte) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	return nil, b
}
