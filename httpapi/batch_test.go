package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBatchRoundTrip(t *testing.T) {
	q := &fakeQueue{batch: []Message{}}
	body := `{"messages":[{"body":"hello"},{"body_b64":"/wA=","content_type":"application/x-bin"}]}`
	rec := serve(t, q, nil, mgmtRequest(http.MethodPost, "/queues/q/batch", body))
	if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), `"ids":[1,2]`) {
		t.Fatalf("batch: %d %s", rec.Code, rec.Body)
	}
	rec = serve(t, q, nil, mgmtRequest(http.MethodGet, "/queues/q?max=5", ""))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"body":"hello"`) || !strings.Contains(rec.Body.String(), `"body_b64":"/wA="`) {
		t.Fatalf("pop many: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(t, q, nil, mgmtRequest(http.MethodGet, "/queues/q?max=5", "")); rec.Code != http.StatusNoContent {
		t.Fatalf("pop many on empty: %d", rec.Code)
	}
}

func TestBatchBadInput(t *testing.T) {
	q := &fakeQueue{batch: []Message{}}
	many := `{"messages":[` + strings.Repeat(`{"body":"x"},`, MaxBatchMessages) + `{"body":"x"}]}`
	for _, c := range []struct {
		body   string
		status int
	}{
		{`{"messages":[]}`, http.StatusBadRequest},
		{many, http.StatusBadRequest},
		{`{"messages":[{"body":"a","body_b64":"YQ=="}]}`, http.StatusBadRequest},
		{`{"messages":[{}]}`, http.StatusBadRequest},
		{`{"messages":[{"body_b64":"***"}]}`, http.StatusBadRequest},
		{`{"messages":[{"body":"0123456789abcdefX"}]}`, http.StatusRequestEntityTooLarge}, // serve's limit is 16 bytes
		{`not json`, http.StatusBadRequest},
		{`{"messages":[{"body":"a","content_type":"text/plain\u0001"}]}`, http.StatusBadRequest},
		{`{"messages":[{"body":"a","content_type":"text/plain\r\nX-Evil: 1"}]}`, http.StatusBadRequest},
		{`{"messages":[{"body":"a","content_type":"text/caf\u00e9"}]}`, http.StatusBadRequest},
	} {
		if rec := serve(t, q, nil, mgmtRequest(http.MethodPost, "/queues/q/batch", c.body)); rec.Code != c.status {
			t.Errorf("%.60s: %d, want %d (%s)", c.body, rec.Code, c.status, rec.Body)
		}
	}
	for _, max := range []string{"0", "1001", "x"} {
		if rec := serve(t, q, nil, mgmtRequest(http.MethodGet, "/queues/q?max="+max, "")); rec.Code != http.StatusBadRequest {
			t.Errorf("max=%s: %d", max, rec.Code)
		}
	}
	if len(q.batch) != 0 {
		t.Fatalf("bad batches stored %d messages", len(q.batch))
	}
}

// An enqueue's group and attributes come in as headers (a batch's in its
// JSON), are checked, and go out with the message.
func TestGroupsAndAttributes(t *testing.T) {
	var got EnqueueOptions
	q := &fakeQueue{enqueueOpts: func(_ context.Context, _, _ string, _ []byte, o EnqueueOptions) (Enqueued, LogPosition, error) {
		got = o
		return Enqueued{ID: 1}, LogPosition{}, nil
	}, defaults: QueueConfig{DelayMS: 2000}}
	req := httptest.NewRequest(http.MethodPost, "/queues/q", strings.NewReader("x"))
	req.Header.Set("Message-Group", "g1")
	req.Header.Set("Message-Attributes", `{"colour":"red","n":{"type":"Number","value":"7"},"raw":{"type":"Binary","value":"AP8="}}`)
	if rec := serve(t, q, nil, req); rec.Code != http.StatusCreated {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	want := []Attribute{{"colour", "String", "red"}, {"n", "Number", "7"}, {"raw", "Binary", "\x00\xff"}}
	if got.Group != "g1" || !reflect.DeepEqual(got.Attributes, want) || got.Delay != 2*time.Second {
		t.Fatalf("options %+v: group, attributes and the queue's delay", got)
	}
	for _, bad := range []map[string]string{
		{"Message-Group": "a b"},
		{"Message-Attributes": `{"AWS.x":"y"}`},
		{"Message-Attributes": `{"n":{"type":"Number","value":"seven"}}`},
		{"Message-Attributes": `{"n":{"type":"Float","value":"1"}}`},
		{"Message-Attributes": `[1]`},
	} {
		req := httptest.NewRequest(http.MethodPost, "/queues/q", strings.NewReader("x"))
		for k, v := range bad {
			req.Header.Set(k, v)
		}
		if rec := serve(t, q, nil, req); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("%v: %d %s", bad, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	writeMessage(rec, Message{ID: 3, Body: "b", Group: "g1", Attributes: []Attribute{{"city", "String", "Zürich"}}})
	if h := rec.Header(); h.Get("Message-Group") != "g1" || h.Get("Message-Attributes") != `{"city":{"type":"String","value":"Z\u00fcrich"}}` {
		t.Fatalf("headers %v", h)
	}
	if a, err := decodeAttributes(json.RawMessage(rec.Header().Get("Message-Attributes"))); err != nil || a[0].Value != "Zürich" {
		t.Fatalf("read back %+v %v", a, err)
	}
}

// POST /queues/{q}/leases?max=N answers up to N leases as JSON, each with
// its token, expiry and delivery count; 204 when none; max is checked.
func TestLeaseManyRoute(t *testing.T) {
	n := 0
	q := &fakeQueue{lease: func(context.Context, string, time.Duration) (Lease, bool, LogPosition, error) {
		if n++; n > 2 {
			return Lease{}, false, LogPosition{}, nil
		}
		return Lease{Message: Message{ID: uint64(n), Body: "b", Group: "g", Deliveries: 1}, Token: "t", Expires: time.Unix(1700000000, 0)}, true, LogPosition{}, nil
	}}
	rec := serve(t, q, nil, httptest.NewRequest(http.MethodPost, "/queues/q/leases?max=5", nil))
	want := `{"leases":[{"id":1,"body":"b","group":"g","lease_token":"t","lease_expires":"2023-11-14T22:13:20Z","delivery_count":1},` +
		`{"id":2,"body":"b","group":"g","lease_token":"t","lease_expires":"2023-11-14T22:13:20Z","delivery_count":1}]}`
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != want {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if rec := serve(t, q, nil, httptest.NewRequest(http.MethodPost, "/queues/q/leases?max=5", nil)); rec.Code != http.StatusNoContent {
		t.Fatalf("none ready: %d", rec.Code)
	}
	for _, bad := range []string{"0", "1001", "x"} {
		if rec := serve(t, q, nil, httptest.NewRequest(http.MethodPost, "/queues/q/leases?max="+bad, nil)); rec.Code != http.StatusBadRequest {
			t.Errorf("max=%s: %d", bad, rec.Code)
		}
	}
}

// A batch reads its queue's defaults once, not once per message (each
// read takes the node's lock), and gives every message without delay_ms
// the queue's delay.
func TestBatchReadsDefaultsOnce(t *testing.T) {
	q := &fakeQueue{defaults: QueueConfig{DelayMS: 3000}}
	q.batch = []Message{}
	rec := serve(t, q, nil, mgmtRequest(http.MethodPost, "/queues/q/batch", `{"messages":[{"body":"a"},{"body":"b","delay_ms":0},{"body":"c"}]}`))
	if rec.Code != http.StatusCreated || q.defaultsN != 1 {
		t.Fatalf("%d %s; defaults read %d times", rec.Code, rec.Body, q.defaultsN)
	}
	if d := []time.Duration{q.batchOpts[0].Delay, q.batchOpts[1].Delay, q.batchOpts[2].Delay}; d[0] != 3*time.Second || d[1] != 0 || d[2] != 3*time.Second {
		t.Fatalf("delays %v, want the queue's 3s except where delay_ms is given", d)
	}
}
