package e2e

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Message attributes (the SDK checks MD5OfMessageAttributes itself, and
// the published vector is checked here too), settable queue attributes
// that bind (VisibilityTimeout, DelaySeconds, MaximumMessageSize), and
// FIFO queues: order per group, one group in flight at a time, groups in
// parallel, content-based deduplication, sequence numbers.
func TestSQSAttributesAndFIFO(t *testing.T) {
	t.Parallel()
	c, eps := sqsCluster(t)
	ctx := context.Background()
	a, b := sqsClient(eps[0]), sqsClient(eps[1])

	cq, err := a.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("attrs"),
		Attributes: map[string]string{"VisibilityTimeout": "1", "MaximumMessageSize": "1024"}})
	if err != nil {
		t.Fatal(err)
	}
	url := cq.QueueUrl
	var exists *types.QueueNameExists
	if _, err := b.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("attrs"),
		Attributes: map[string]string{"VisibilityTimeout": "5"}}); !errors.As(err, &exists) {
		t.Fatalf("CreateQueue with other attributes: %v, want *types.QueueNameExists", err)
	}
	sent, err := a.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String("with attributes"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"attribName1": {DataType: aws.String("String"), StringValue: aws.String("attribValue 1")}}})
	if err != nil || *sent.MD5OfMessageAttributes != "19e27d4e946b072f3f58da80d94fd778" {
		t.Fatalf("send with an attribute: %v %+v", err, sent)
	}
	if _, err := a.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String(strings.Repeat("x", 1100))}); err == nil ||
		!strings.Contains(err.Error(), "InvalidParameterValue") {
		t.Fatalf("a body over MaximumMessageSize: %v", err)
	}
	recv := func(cl *sqs.Client, url *string, n int32, wait int32) []types.Message {
		t.Helper()
		r, err := cl.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: n, WaitTimeSeconds: wait,
			MessageAttributeNames: []string{"All"}, MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		return r.Messages
	}
	ms := recv(b, url, 1, 0)
	if len(ms) != 1 || *ms[0].MessageAttributes["attribName1"].StringValue != "attribValue 1" {
		t.Fatalf("received %+v", ms)
	}
	if ts, _ := strconv.ParseInt(ms[0].Attributes["SentTimestamp"], 10, 64); time.Since(time.UnixMilli(ts)).Abs() > 5*time.Minute {
		t.Fatalf("SentTimestamp %q", ms[0].Attributes["SentTimestamp"])
	}
	// The queue's VisibilityTimeout of 1 s: it comes back by itself.
	if again := recv(a, url, 1, 20); len(again) != 1 || again[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("after the queue's visibility timeout: %+v", again)
	}
	if _, err := a.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: url, Attributes: map[string]string{"DelaySeconds": "600"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String("delayed by the queue")}); err != nil {
		t.Fatal(err)
	}
	if st := stats(t, c.procs[2], "attrs"); st.Delayed != 1 {
		t.Fatalf("the queue's DelaySeconds did not apply: %+v", st)
	}
	qa, err := b.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil || qa.Attributes["VisibilityTimeout"] != "1" || qa.Attributes["DelaySeconds"] != "600" || qa.Attributes["MaximumMessageSize"] != "1024" ||
		qa.Attributes["CreatedTimestamp"] == "" || qa.Attributes["LastModifiedTimestamp"] < qa.Attributes["CreatedTimestamp"] {
		t.Fatalf("queue attributes %v %v", qa, err)
	}

	// FIFO.
	if _, err := a.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("orders.fifo")}); err == nil {
		t.Fatal("a .fifo queue without FifoQueue=true was made")
	}
	fq, err := a.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("orders.fifo"),
		Attributes: map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	furl := fq.QueueUrl
	if _, err := a.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: furl, MessageBody: aws.String("no group")}); err == nil {
		t.Fatal("a FIFO send without MessageGroupId was taken")
	}
	var entries []types.SendMessageBatchRequestEntry
	for i, m := range []string{"A:1", "B:1", "A:2", "A:3", "B:2"} {
		g, _, _ := strings.Cut(m, ":")
		entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(m), MessageGroupId: aws.String(g)})
	}
	sb, err := b.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: furl, Entries: entries})
	if err != nil || len(sb.Successful) != 5 || sb.Successful[0].SequenceNumber == nil {
		t.Fatalf("batch: %v %+v", err, sb)
	}
	dup, err := a.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: furl, MessageBody: aws.String("A:1"), MessageGroupId: aws.String("A")})
	if err != nil || *dup.MessageId != *sb.Successful[0].MessageId {
		t.Fatalf("a duplicate by content: %v %v, want the original's id %s", err, dup, *sb.Successful[0].MessageId)
	}
	// One receive of 2 takes group A's first two in a row; the next
	// takes B's, as A is in flight; then nothing until A is deleted.
	var order []string
	take := func(n int32, want string) []types.Message {
		t.Helper()
		ms := recv(a, furl, n, 0)
		var got []string
		for _, m := range ms {
			got = append(got, *m.Body)
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("received %v, want %s", got, want)
		}
		order = append(order, got...)
		return ms
	}
	del := func(ms []types.Message) {
		t.Helper()
		for _, m := range ms {
			if _, err := b.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: furl, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	first := take(2, "A:1 A:2")
	second := take(10, "B:1 B:2")
	take(10, "")
	del(first)
	del(take(10, "A:3"))
	del(second)
	var as, bs []string
	for _, m := range order {
		if strings.HasPrefix(m, "A") {
			as = append(as, m)
		} else {
			bs = append(bs, m)
		}
	}
	if strings.Join(as, " ") != "A:1 A:2 A:3" || strings.Join(bs, " ") != "B:1 B:2" {
		t.Fatalf("order %v", order)
	}
	if st := stats(t, c.procs[1], "orders.fifo"); st.Depth+st.Leased+st.Delayed != 0 || st.Totals.Enqueued != 5 {
		t.Fatalf("after the drain: %+v (the duplicate must not be stored)", st)
	}
}
