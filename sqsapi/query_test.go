package sqsapi

import (
	"encoding/json"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The request bodies Debian's aws CLI 2.9.19 sent for every action
// (testdata/cli-2.9.19-query.txt, captured with a server that only
// recorded them) become the JSON protocol's inputs.
func TestQueryInputsFromTheCLI(t *testing.T) {
	raw, err := os.ReadFile("testdata/cli-2.9.19-query.txt")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		form, err := url.ParseQuery(line)
		if err != nil {
			t.Fatal(err)
		}
		in, err := queryInput(form)
		if err != nil {
			t.Fatalf("%s: %v", form.Get("Action"), err)
		}
		var m map[string]any
		json.Unmarshal(in, &m)
		got[form.Get("Action")] = m
		if _, ok := actions[form.Get("Action")]; !ok {
			t.Errorf("action %s is not served", form.Get("Action"))
		}
	}
	if len(got) != 14 {
		t.Fatalf("%d actions captured", len(got))
	}
	u := "http://127.0.0.1:18999/000000000000/q"
	for action, want := range map[string]map[string]any{
		"CreateQueue": {"QueueName": "q.fifo", "Attributes": map[string]any{"FifoQueue": "true", "VisibilityTimeout": "10"}},
		"SendMessage": {"QueueUrl": u, "MessageBody": "hi there", "DelaySeconds": 2.0, "MessageGroupId": "g", "MessageDeduplicationId": "d",
			"MessageAttributes": map[string]any{"a": map[string]any{"DataType": "String", "StringValue": "x y"},
				"b": map[string]any{"DataType": "Binary", "BinaryValue": "AP8="}}},
		"SendMessageBatch": {"QueueUrl": u, "Entries": []any{
			map[string]any{"Id": "1", "MessageBody": "one", "MessageAttributes": map[string]any{"n": map[string]any{"DataType": "Number", "StringValue": "1"}}},
			map[string]any{"Id": "2", "MessageBody": "two", "DelaySeconds": 3.0}}},
		"ReceiveMessage": {"QueueUrl": u, "AttributeNames": []any{"All"}, "MessageAttributeNames": []any{"All", "n.*"},
			"MaxNumberOfMessages": 5.0, "VisibilityTimeout": 7.0, "WaitTimeSeconds": 1.0},
		"ChangeMessageVisibilityBatch": {"QueueUrl": u, "Entries": []any{map[string]any{"Id": "1", "ReceiptHandle": "r1", "VisibilityTimeout": 5.0}}},
		"GetQueueAttributes":           {"QueueUrl": u, "AttributeNames": []any{"All", "VisibilityTimeout"}},
		"ListQueues":                   {"QueueNamePrefix": "q", "MaxResults": 5.0},
	} {
		if !reflect.DeepEqual(got[action], want) {
			t.Errorf("%s:\n%v\nwant\n%v", action, got[action], want)
		}
	}
	for _, bad := range []string{"Action=X&Attribute.x.Name=a", "Action=X&MaxResults=ten", "Action=X&A=1&A.B=2", "Action=X&Attribute.1.Value=v"} {
		form, _ := url.ParseQuery(bad)
		if _, err := queryInput(form); err == nil {
			t.Errorf("%s taken", bad)
		}
	}
}

// Outputs become the query protocol's XML: lists and maps flattened,
// batch entries named by action, text escaped.
func TestQueryResponse(t *testing.T) {
	out := queryResponse("ReceiveMessage", map[string]any{"Messages": []any{map[string]any{
		"Body": "a<b", "Attributes": map[string]any{"SenderId": "raftq"},
		"MessageAttributes": map[string]any{"n": map[string]any{"DataType": "Number", "StringValue": "1"}}}}})
	for _, want := range []string{`<ReceiveMessageResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><ReceiveMessageResult><Message>`,
		`<Attribute><Name>SenderId</Name><Value>raftq</Value></Attribute>`, `<Body>a&lt;b</Body>`,
		`<MessageAttribute><Name>n</Name><Value><DataType>Number</DataType><StringValue>1</StringValue></Value></MessageAttribute>`,
		`<ResponseMetadata><RequestId>`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in\n%s", want, out)
		}
	}
	out = queryResponse("DeleteMessageBatch", map[string]any{"Successful": []any{map[string]any{"Id": "1"}},
		"Failed": []any{map[string]any{"Id": "2", "Code": "ReceiptHandleIsInvalid", "SenderFault": true}}})
	if !strings.Contains(out, "<DeleteMessageBatchResultEntry><Id>1</Id></DeleteMessageBatchResultEntry>") ||
		!strings.Contains(out, "<BatchResultErrorEntry><Code>ReceiptHandleIsInvalid</Code><Id>2</Id><SenderFault>true</SenderFault></BatchResultErrorEntry>") {
		t.Errorf("batch result\n%s", out)
	}
	if out := queryResponse("DeleteQueue", map[string]any{}); strings.Contains(out, "Result>") {
		t.Errorf("an empty output has a result element: %s", out)
	}
}
