package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// sqsCluster starts a cluster whose nodes also serve SQS, and a client
// of node i's endpoint.
func sqsCluster(t *testing.T) (*cluster, []string) {
	c := prepareCluster(t, 3, nil)
	var eps []string
	for _, p := range c.procs {
		addr := freePort(t)
		p.flags = []string{"--sqs-addr", addr}
		eps = append(eps, "http://"+addr)
	}
	c.startAll()
	return c, eps
}

func sqsClient(endpoint string) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		HTTPClient:   &http.Client{Timeout: 60 * time.Second},
	})
}

// The AWS SDK for Go against three real nodes: the queue lifecycle, sends
// and receives (the SDK checks every body's MD5 itself), batches, typed
// errors, long polls, redelivery, stale receipt handles, dead letters,
// and the same queue through raftq's own API.
func TestSQSWithTheGoSDK(t *testing.T) {
	t.Parallel()
	c, eps := sqsCluster(t)
	ctx := context.Background()
	a, b := sqsClient(eps[0]), sqsClient(eps[1])

	cq, err := a.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs")})
	if err != nil {
		t.Fatal(err)
	}
	url := *cq.QueueUrl
	if !strings.HasSuffix(url, "/000000000000/jobs") {
		t.Fatalf("queue URL %s", url)
	}
	if again, err := b.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs")}); err != nil || !strings.HasSuffix(*again.QueueUrl, "/jobs") {
		t.Fatalf("CreateQueue again: %v", err)
	}
	if got, err := b.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("jobs")}); err != nil || !strings.HasSuffix(*got.QueueUrl, "/jobs") {
		t.Fatalf("GetQueueUrl: %v", err)
	}
	var missing *types.QueueDoesNotExist
	if _, err := b.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nope")}); !errors.As(err, &missing) {
		t.Fatalf("GetQueueUrl of a missing queue: %v, want *types.QueueDoesNotExist", err)
	}
	if _, err := a.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(strings.Replace(url, "jobs", "nope", 1)), MessageBody: aws.String("x")}); !errors.As(err, &missing) {
		t.Fatalf("SendMessage to a missing queue: %v", err)
	}

	// Send through node 1, receive through node 2 (the SDK checks MD5s).
	for i := range 3 {
		if _, err := a.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(fmt.Sprint("m", i))}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := b.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount}})
	if err != nil || len(r.Messages) != 3 || *r.Messages[0].Body != "m0" || *r.Messages[2].Body != "m2" {
		t.Fatalf("receive: %v %d", err, len(r.Messages))
	}
	if n := r.Messages[0].Attributes["ApproximateReceiveCount"]; n != "1" {
		t.Fatalf("ApproximateReceiveCount %q", n)
	}
	// The same queue through raftq's own API: all three are leased.
	if st := stats(t, c.procs[2], "jobs"); st.Leased != 3 || st.Depth != 0 {
		t.Fatalf("raftq stats: %+v", st)
	}
	del, err := a.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("a"), ReceiptHandle: r.Messages[0].ReceiptHandle},
		{Id: aws.String("b"), ReceiptHandle: r.Messages[1].ReceiptHandle},
		{Id: aws.String("bad"), ReceiptHandle: aws.String("not-a-handle")},
	}})
	if err != nil || len(del.Successful) != 2 || len(del.Failed) != 1 || *del.Failed[0].Code != "ReceiptHandleIsInvalid" {
		t.Fatalf("delete batch: %v %+v", err, del)
	}
	var badHandle *types.ReceiptHandleIsInvalid
	if _, err := b.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: aws.String("xyz")}); !errors.As(err, &badHandle) {
		t.Fatalf("DeleteMessage with a foreign handle: %v", err)
	}

	// Visibility 0 makes the third ready again; its old handle then deletes
	// nothing (and succeeds), as in SQS.
	if _, err := b.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url),
		ReceiptHandle: r.Messages[2].ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	r2, err := a.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), VisibilityTimeout: 1,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
	if err != nil || len(r2.Messages) != 1 || *r2.Messages[0].Body != "m2" || r2.Messages[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("receive after visibility 0: %v %+v", err, r2.Messages)
	}
	if _, err := a.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: r.Messages[2].ReceiptHandle}); err != nil {
		t.Fatalf("a stale handle: %v", err)
	}
	if st := stats(t, c.procs[0], "jobs"); st.Leased != 1 {
		t.Fatalf("a stale handle deleted the message: %+v", st)
	}
	// VisibilityTimeout 1: redelivered after a second, count 3.
	var r3 *sqs.ReceiveMessageOutput
	waitFor(t, func() bool {
		r3, err = b.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 5,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount}})
		return err == nil && len(r3.Messages) == 1
	}, "redelivery after VisibilityTimeout=1")
	if r3.Messages[0].Attributes["ApproximateReceiveCount"] != "3" {
		t.Fatalf("after the visibility timeout: %+v", r3.Messages[0].Attributes)
	}
	if _, err := b.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: r3.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}

	// A long poll returns early on a send through another node; one on an
	// empty queue returns empty after its wait.
	got := make(chan *sqs.ReceiveMessageOutput, 1)
	go func() {
		out, err := b.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 20})
		if err != nil {
			t.Error(err)
		}
		got <- out
	}()
	time.Sleep(300 * time.Millisecond) // let it wait (a send before it only makes the test weaker)
	if _, err := sqsClient(eps[2]).SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("woken")}); err != nil {
		t.Fatal(err)
	}
	out := <-got
	if out == nil || len(out.Messages) != 1 || *out.Messages[0].Body != "woken" {
		t.Fatalf("long poll: %+v", out)
	}
	if _, err := a.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: out.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := a.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 1}); err != nil || len(out.Messages) != 0 || time.Since(start) < time.Second {
		t.Fatalf("an empty long poll: %v %v after %v", err, out, time.Since(start))
	}

	// Batches: 10 go, 11 are refused whole with the typed error.
	var entries []types.SendMessageBatchRequestEntry
	for i := range 11 {
		entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint("e", i)), MessageBody: aws.String(fmt.Sprint("b", i))})
	}
	var tooMany *types.TooManyEntriesInBatchRequest
	if _, err := a.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries}); !errors.As(err, &tooMany) {
		t.Fatalf("a batch of 11: %v", err)
	}
	sb, err := a.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries[:10]})
	if err != nil || len(sb.Successful) != 10 {
		t.Fatalf("a batch of 10: %v %+v", err, sb)
	}
	attrs, err := b.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil || attrs.Attributes["ApproximateNumberOfMessages"] != "10" || attrs.Attributes["QueueArn"] != "arn:aws:sqs:us-east-1:000000000000:jobs" {
		t.Fatalf("attributes: %v %v", err, attrs.Attributes)
	}
	// A batch keeps its order; its receipts go back in one batch.
	rb, err := b.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
	if err != nil || len(rb.Messages) != 10 {
		t.Fatalf("receive the batch: %v", err)
	}
	var dels []types.DeleteMessageBatchRequestEntry
	for i, m := range rb.Messages {
		if *m.Body != fmt.Sprint("b", i) {
			t.Fatalf("message %d of the batch is %q", i, *m.Body)
		}
		dels = append(dels, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint("d", i)), ReceiptHandle: m.ReceiptHandle})
	}
	if d, err := a.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: dels}); err != nil || len(d.Successful) != 10 {
		t.Fatalf("delete the batch: %v %+v", err, d)
	}
	a.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("purged")})
	if _, err := a.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(url)}); err != nil {
		t.Fatal(err)
	}
	if st := stats(t, c.procs[1], "jobs"); st.Depth != 0 || st.Leased != 0 {
		t.Fatalf("after the purge: %+v", st)
	}

	// Dead letters after maxReceiveCount.
	if _, err := a.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs-dlq")}); err != nil {
		t.Fatal(err)
	}
	policy := `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:jobs-dlq","maxReceiveCount":"2"}`
	if _, err := b.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: map[string]string{"RedrivePolicy": policy}}); err != nil {
		t.Fatal(err)
	}
	a.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("poison")})
	for range 2 {
		out, err := a.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 5})
		if err != nil || len(out.Messages) != 1 {
			t.Fatalf("receive poison: %v", err)
		}
		a.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: out.Messages[0].ReceiptHandle, VisibilityTimeout: 0})
	}
	if out, err := a.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url)}); err != nil || len(out.Messages) != 0 {
		t.Fatalf("a third receive of the poison message: %v %v", err, out)
	}
	dlqURL := strings.Replace(url, "/jobs", "/jobs-dlq", 1)
	if out, err := b.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlqURL), WaitTimeSeconds: 5}); err != nil || len(out.Messages) != 1 || *out.Messages[0].Body != "poison" {
		t.Fatalf("the dead-letter queue: %v %+v", err, out)
	}

	// Listing, then deleting.
	l, err := b.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String("jobs"), MaxResults: aws.Int32(1)})
	if err != nil || len(l.QueueUrls) != 1 || l.NextToken == nil {
		t.Fatalf("list page 1: %v %+v", err, l)
	}
	l2, err := b.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String("jobs"), MaxResults: aws.Int32(1), NextToken: l.NextToken})
	if err != nil || len(l2.QueueUrls) != 1 || l2.QueueUrls[0] == l.QueueUrls[0] {
		t.Fatalf("list page 2: %v %+v", err, l2)
	}
	if _, err := a.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(dlqURL)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("jobs-dlq")}); !errors.As(err, &missing) {
		t.Fatalf("a deleted queue: %v", err)
	}
	c.converged()
}

// The leader killed while SDK clients on the other nodes send, with the
// SDK's own retries: every send the SDK reported done comes out.
func TestSQSLeaderKillLosesNothing(t *testing.T) {
	t.Parallel()
	c, eps := sqsCluster(t)
	ctx := context.Background()
	l := c.leader()
	var cls []*sqs.Client
	for i := range c.procs {
		if i != l {
			cls = append(cls, sqsClient(eps[i]))
		}
	}
	cq, err := cls[0].CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("kill")})
	if err != nil {
		t.Fatal(err)
	}
	url := cq.QueueUrl
	acked := map[string]bool{}
	afterKill := 0
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < 60 || afterKill == 0 && time.Now().Before(deadline); i++ {
		if i == 20 {
			c.kill(l)
		}
		body := fmt.Sprint("k", i)
		if _, err := cls[i%2].SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String(body)}); err == nil {
			acked[body] = true
			if i >= 20 {
				afterKill++
			}
		}
	}
	if afterKill == 0 {
		t.Fatal("no send acknowledged after the leader was killed")
	}
	t.Logf("%d sends acknowledged, %d after the leader was killed", len(acked), afterKill)
	got := map[string]bool{}
	deadline = time.Now().Add(60 * time.Second)
	missing := func() int {
		n := 0
		for body := range acked {
			if !got[body] {
				n++
			}
		}
		return n
	}
	for missing() > 0 && time.Now().Before(deadline) {
		out, err := cls[1].ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			continue
		}
		var dels []types.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			got[*m.Body] = true
			dels = append(dels, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if len(dels) > 0 {
			cls[1].DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: url, Entries: dels})
		}
	}
	for body := range acked {
		if !got[body] {
			t.Errorf("acknowledged %s never came out", body)
		}
	}
}

// Waiting receives cost nothing: ten long polls on an empty queue, over
// three nodes, write no log entry while they wait, and one message sent
// costs its send and a lease per node with waiters, not one per waiter.
func TestSQSLongPollsCostNothing(t *testing.T) {
	t.Parallel()
	const waiters = 10
	c, eps := sqsCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := sqsClient(eps[0])
	cq, err := cl.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("idle")})
	if err != nil {
		t.Fatal(err)
	}
	before := c.settle()
	got := make(chan string, 10)
	for i := range waiters {
		go func() {
			out, err := sqsClient(eps[i%3]).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: cq.QueueUrl, WaitTimeSeconds: 20})
			if err == nil && len(out.Messages) > 0 {
				got <- *out.Messages[0].Body
			}
		}()
	}
	waiting := c.settle()
	if _, err := sqsClient(eps[1]).SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: cq.QueueUrl, MessageBody: aws.String("one")}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if b != "one" {
			t.Fatalf("received %q", b)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no waiting receive got the message")
	}
	after := c.settle()
	t.Logf("entries: %d while 10 receives waited, %d for one send waking one of them", waiting-before, after-waiting)
	if waiting != before {
		t.Errorf("10 waiting receives wrote %d log entries", waiting-before)
	}
	// The send, and one lease per node with waiters (each node gives its
	// own waiters their turns; two of the three find nothing), whatever
	// the number of waiters.
	if after-waiting > 1+3 {
		t.Errorf("one message for 10 waiting receives cost %d log entries", after-waiting)
	}
}
