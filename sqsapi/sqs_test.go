package sqsapi

import (
	"github.com/raftq/raftq/httpapi"

	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestReceiptHandles(t *testing.T) {
	h := receiptHandle("jobs", 42, "8.1f")
	q, id, tok, err := parseHandle(h)
	if err != nil || q != "jobs" || id != 42 || tok != "8.1f" {
		t.Fatalf("round trip: %q %d %q %v", q, id, tok, err)
	}
	for _, bad := range []string{"", "xyz", receiptHandle("jobs", 0, "t"), receiptHandle("bad name", 1, "t"), receiptHandle("jobs", 1, "")} {
		var e *Error
		if _, _, _, err := parseHandle(bad); !errors.As(err, &e) || e.Code != "ReceiptHandleIsInvalid" {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestBatchChecks(t *testing.T) {
	for _, c := range []struct {
		ids  []string
		code string
	}{
		{nil, "EmptyBatchRequest"},
		{strings.Split("a b c d e f g h i j k", " "), "TooManyEntriesInBatchRequest"},
		{[]string{"a", "a"}, "BatchEntryIdsNotDistinct"},
		{[]string{"a b"}, "InvalidBatchEntryId"},
		{[]string{strings.Repeat("x", 81)}, "InvalidBatchEntryId"},
		{strings.Split("a b c d e f g h i j", " "), ""},
	} {
		err := checkBatch(c.ids)
		var e *Error
		if c.code == "" && err != nil || c.code != "" && (!errors.As(err, &e) || e.Code != c.code) {
			t.Errorf("%v: %v, want %s", c.ids, err, c.code)
		}
	}
}

// RedrivePolicy's maxReceiveCount is a string or a number; other
// attributes are refused, not ignored.
func TestRedrivePolicy(t *testing.T) {
	s := NewHandler(nil, zap.NewNop(), Options{}).(*server)
	for _, p := range []string{
		`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"5"}`,
		`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":5}`,
	} {
		ch, err := s.configFromAttributes("q", map[string]string{"RedrivePolicy": p})
		if err != nil || *ch.MaxDeliveries != 5 || *ch.DeadLetterQueue != "dlq" {
			t.Errorf("%s: %+v %v", p, ch, err)
		}
	}
	for _, bad := range []map[string]string{
		{"RedrivePolicy": `{"deadLetterTargetArn":"dlq","maxReceiveCount":5}`},
		{"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:r:a:dlq","maxReceiveCount":0}`},
		{"RedrivePolicy": `nope`},
		{"VisibilityTimeout": "43201"},
		{"MessageRetentionPeriod": "59"},
		{"ContentBasedDeduplication": "true"}, // a standard queue
		{"FifoQueue": "true"},
		{"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:000000000000:dlq","maxReceiveCount":5}`},
	} {
		if _, err := s.configFromAttributes("q", bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	ch, err := s.configFromAttributes("q", map[string]string{"VisibilityTimeout": "0", "DelaySeconds": "5", "MaximumMessageSize": "1024"})
	if err != nil || ch.MaxDeliveries != nil || *ch.VisibilityTimeoutMS != 1 || *ch.DelayMS != 5000 || *ch.MaxMessageSize != 1024 {
		t.Errorf("settings: %+v %v", ch, err)
	}
	if ch, err := s.configFromAttributes("q.fifo", map[string]string{"ContentBasedDeduplication": "true"}); err != nil || !*ch.ContentDedup {
		t.Errorf("ContentBasedDeduplication: %+v %v", ch, err)
	}
}

// Errors have the JSON protocol's shape and the query protocol's code in
// x-amzn-query-error.
func TestErrorShape(t *testing.T) {
	rec := httptest.NewRecorder()
	writeError(rec, errNoQueue("q"))
	var body map[string]string
	json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != 400 || body["__type"] != "com.amazonaws.sqs#QueueDoesNotExist" || body["message"] == "" ||
		rec.Header().Get("x-amzn-query-error") != "AWS.SimpleQueueService.NonExistentQueue;Sender" {
		t.Fatalf("%d %v %v", rec.Code, body, rec.Header())
	}
	if md5Hex("hello") != "5d41402abc4b2a76b9719d911017c592" {
		t.Fatal("md5")
	}
}

func TestMessageIDsAndBodies(t *testing.T) {
	a, b := messageID("jobs", 1), messageID("jobs", 2)
	if a == b || messageID("other", 1) == a || len(a) != 36 || a[14] != '8' || !strings.ContainsAny(a[19:20], "89ab") {
		t.Fatalf("ids %s %s", a, b)
	}
	if got := sqsBody("\xff\xfe\x00abc"); got != "\ufffd\ufffd\x00abc" {
		t.Fatalf("body %q", got)
	}
	for body, ok := range map[string]bool{"plain text\n\t": true, "\x00": false, "\x07bell": false, "\ufffe": false, "😀": true} {
		if validContents(body) != ok {
			t.Errorf("%q valid: %v", body, !ok)
		}
	}
}

// MD5OfMessageAttributes as SQS computes it, against its published
// vector; the order attributes come in does not matter.
func TestAttributesMD5(t *testing.T) {
	one := []httpapi.Attribute{{Name: "attribName1", Type: "String", Value: "attribValue 1"}}
	if got := attributesMD5(one); got != "19e27d4e946b072f3f58da80d94fd778" {
		t.Fatalf("md5 %s", got)
	}
	two := []httpapi.Attribute{{Name: "b", Type: "Binary", Value: "\x01"}, {Name: "a", Type: "Number", Value: "1"}}
	rev := []httpapi.Attribute{two[1], two[0]}
	if attributesMD5(two) != attributesMD5(rev) || attributesMD5(nil) != "" {
		t.Fatal("order or emptiness changes the MD5")
	}
	got := attributesOut(append(two, httpapi.Attribute{Name: "a.x", Type: "String", Value: "v"}), []string{"a.*"})
	if len(got) != 1 || got[0].Name != "a.x" {
		t.Fatalf("a.* selects %+v", got)
	}
}
