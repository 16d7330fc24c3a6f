package httpapi

import (
	"net/http"
	"strings"
	"testing"
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
