package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
)

// The query protocol (form-encoded requests, XML answers) against three
// real nodes, as older SDKs and Debian's aws CLI 2.9 speak it: the queue
// lifecycle, a send with an attribute, a receive, a delete, a batch, and
// errors in the query protocol's shape.
func TestSQSQueryProtocol(t *testing.T) {
	t.Parallel()
	_, eps := sqsCluster(t)
	post := func(ep string, form url.Values) (int, string) {
		t.Helper()
		resp, err := http.Post(ep+"/", "application/x-www-form-urlencoded; charset=utf-8", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	must := func(ep string, form url.Values, want ...string) string {
		t.Helper()
		code, body := post(ep, form)
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Fatalf("%s: %d, no %q in\n%s", form.Get("Action"), code, w, body)
			}
		}
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", form.Get("Action"), code, body)
		}
		return body
	}
	must(eps[0], url.Values{"Action": {"CreateQueue"}, "QueueName": {"legacy"}, "Attribute.1.Name": {"VisibilityTimeout"}, "Attribute.1.Value": {"10"}},
		"<CreateQueueResponse", "<QueueUrl>http://"+strings.TrimPrefix(eps[0], "http://")+"/000000000000/legacy</QueueUrl>")
	qurl := eps[0] + "/000000000000/legacy"
	must(eps[1], url.Values{"Action": {"SendMessage"}, "QueueUrl": {qurl}, "MessageBody": {"hi <there>"},
		"MessageAttribute.1.Name": {"attribName1"}, "MessageAttribute.1.Value.DataType": {"String"}, "MessageAttribute.1.Value.StringValue": {"attribValue 1"}},
		"<MD5OfMessageAttributes>19e27d4e946b072f3f58da80d94fd778</MD5OfMessageAttributes>", "<MessageId>")
	body := must(eps[2], url.Values{"Action": {"ReceiveMessage"}, "QueueUrl": {qurl}, "MessageAttributeName.1": {"All"}, "AttributeName.1": {"All"}},
		"<Body>hi &lt;there&gt;</Body>", "<Name>ApproximateReceiveCount</Name><Value>1</Value>",
		"<MessageAttribute><Name>attribName1</Name><Value><DataType>String</DataType><StringValue>attribValue 1</StringValue></Value></MessageAttribute>")
	var r struct {
		Messages []struct{ ReceiptHandle string } `xml:"ReceiveMessageResult>Message"`
	}
	if err := xml.Unmarshal([]byte(body), &r); err != nil || len(r.Messages) != 1 {
		t.Fatalf("receive: %v %+v", err, r)
	}
	must(eps[0], url.Values{"Action": {"DeleteMessageBatch"}, "QueueUrl": {qurl},
		"DeleteMessageBatchRequestEntry.1.Id": {"a"}, "DeleteMessageBatchRequestEntry.1.ReceiptHandle": {r.Messages[0].ReceiptHandle},
		"DeleteMessageBatchRequestEntry.2.Id": {"b"}, "DeleteMessageBatchRequestEntry.2.ReceiptHandle": {"junk"}},
		"<DeleteMessageBatchResultEntry><Id>a</Id></DeleteMessageBatchResultEntry>", "<Code>ReceiptHandleIsInvalid</Code>")
	must(eps[1], url.Values{"Action": {"GetQueueAttributes"}, "QueueUrl": {qurl}, "AttributeName.1": {"All"}},
		"<Attribute><Name>VisibilityTimeout</Name><Value>10</Value></Attribute>", "<Name>ApproximateNumberOfMessages</Name><Value>0</Value>")
	// Old SDKs post to the queue's URL without QueueUrl.
	resp, err := http.Post(qurl, "application/x-www-form-urlencoded", strings.NewReader("Action=SendMessage&MessageBody=posted+to+the+queue"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a send posted to the queue URL: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	code, body := post(eps[2], url.Values{"Action": {"GetQueueUrl"}, "QueueName": {"nope"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "<ErrorResponse") || !strings.Contains(body, "<Code>AWS.SimpleQueueService.NonExistentQueue</Code>") ||
		!strings.Contains(body, "<Type>Sender</Type>") {
		t.Fatalf("a missing queue: %d %s", code, body)
	}
	if code, body := post(eps[0], url.Values{"Action": {"Frobnicate"}}); code != http.StatusBadRequest || !strings.Contains(body, "<Code>InvalidAction</Code>") {
		t.Fatalf("an unknown action: %d %s", code, body)
	}
	awsCLI29(t, eps)
}

// awsCLI29 runs every action through Debian's aws CLI (2.9, which speaks
// the query protocol) when it is installed (.ci/run installs it).
func awsCLI29(t *testing.T, eps []string) {
	cli := "/usr/bin/aws"
	out, err := exec.Command(cli, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "aws-cli/2.9.") {
		t.Logf("skipping the aws CLI part: Debian's aws CLI 2.9 (apt-get install awscli) is not at %s (%s %v)", cli, bytes.TrimSpace(out), err)
		return
	}
	run := func(ep string, args ...string) map[string]any {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, append([]string{"--endpoint-url", ep, "--output", "json", "sqs"}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=x", "AWS_DEFAULT_REGION=us-east-1",
			"AWS_MAX_ATTEMPTS=1", "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws sqs %v: %v\n%s", args, err, out)
		}
		m := map[string]any{}
		if len(bytes.TrimSpace(out)) > 0 {
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("aws sqs %v: %v\n%s", args, err, out)
			}
		}
		return m
	}
	u := run(eps[0], "create-queue", "--queue-name", "cli.fifo", "--attributes", "FifoQueue=true,ContentBasedDeduplication=true")["QueueUrl"].(string)
	run(eps[1], "list-queues", "--queue-name-prefix", "cli")
	run(eps[1], "get-queue-url", "--queue-name", "cli.fifo")
	// Leases long enough for the slow CLI (each run starts Python) on a busy machine.
	run(eps[2], "set-queue-attributes", "--queue-url", u, "--attributes", "VisibilityTimeout=600")
	if a := run(eps[2], "get-queue-attributes", "--queue-url", u, "--attribute-names", "All")["Attributes"].(map[string]any); a["VisibilityTimeout"] != "600" || a["FifoQueue"] != "true" {
		t.Fatalf("attributes %v", a)
	}
	s := run(eps[0], "send-message", "--queue-url", u, "--message-body", "one", "--message-group-id", "g",
		"--message-attributes", `{"attribName1":{"DataType":"String","StringValue":"attribValue 1"}}`)
	if s["MD5OfMessageAttributes"] != "19e27d4e946b072f3f58da80d94fd778" || s["SequenceNumber"] == nil {
		t.Fatalf("send %v", s)
	}
	run(eps[1], "send-message-batch", "--queue-url", u, "--entries", `[{"Id":"1","MessageBody":"two","MessageGroupId":"g"},{"Id":"2","MessageBody":"x","MessageGroupId":"h"}]`)
	got := run(eps[2], "receive-message", "--queue-url", u, "--max-number-of-messages", "10", "--attribute-names", "All", "--message-attribute-names", "All")
	ms := got["Messages"].([]any)
	if len(ms) != 3 || ms[0].(map[string]any)["Body"] != "one" || ms[1].(map[string]any)["Body"] != "two" || ms[2].(map[string]any)["Body"] != "x" {
		t.Fatalf("receive (a group's messages in a row): %v", got)
	}
	h0, h1 := ms[0].(map[string]any)["ReceiptHandle"].(string), ms[2].(map[string]any)["ReceiptHandle"].(string)
	run(eps[0], "change-message-visibility", "--queue-url", u, "--receipt-handle", h1, "--visibility-timeout", "0")
	run(eps[0], "change-message-visibility-batch", "--queue-url", u, "--entries", `[{"Id":"1","ReceiptHandle":"`+h0+`","VisibilityTimeout":60}]`)
	run(eps[1], "delete-message", "--queue-url", u, "--receipt-handle", h0)
	run(eps[1], "delete-message-batch", "--queue-url", u, "--entries", `[{"Id":"1","ReceiptHandle":"`+h0+`"}]`)
	run(eps[2], "purge-queue", "--queue-url", u)
	run(eps[2], "delete-queue", "--queue-url", u)
}

// With --auth-token-file, SQS requests are checked: signed (SigV4) with an
// access key id the token file names, whose token is the secret, and
// holding the action's role as raftq's routes need it.
func TestSQSWithTokens(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(file, []byte("tok-a producer,consumer,admin sqs=ADMINKEY\ntok-c consumer sqs=CONSUMERKEY\n"), 0o600)
	c := prepareCluster(t, 3, nil, "--auth-token-file", file)
	var eps []string
	for _, p := range c.procs {
		addr := freePort(t)
		p.flags = []string{"--sqs-addr", addr}
		eps = append(eps, "http://"+addr)
		u, _ := url.Parse(p.api)
		harnessTokens.hosts.Store(u.Host, "tok-a")
	}
	c.startAll()
	ctx := context.Background()
	client := func(ep, id, secret string) *sqs.Client {
		return sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(ep), RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), HTTPClient: &http.Client{Timeout: time.Minute}})
	}
	admin, consumer := client(eps[0], "ADMINKEY", "tok-a"), client(eps[1], "CONSUMERKEY", "tok-c")
	cq, err := admin.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("guarded")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: cq.QueueUrl, MessageBody: aws.String("m")}); err != nil {
		t.Fatal(err)
	}
	code := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return fmt.Sprint(err)
	}
	if _, err := consumer.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: cq.QueueUrl, MessageBody: aws.String("x")}); code(err) != "AccessDenied" {
		t.Fatalf("a send with a consumer's key: %v", err)
	}
	if r, err := consumer.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: cq.QueueUrl}); err != nil || len(r.Messages) != 1 {
		t.Fatalf("a receive with a consumer's key: %v", err)
	}
	if _, err := client(eps[2], "ADMINKEY", "wrong").ListQueues(ctx, &sqs.ListQueuesInput{}); code(err) != "SignatureDoesNotMatch" {
		t.Fatalf("another secret: %v", err)
	}
	if _, err := client(eps[2], "NOBODY", "tok-a").ListQueues(ctx, &sqs.ListQueuesInput{}); code(err) != "InvalidClientTokenId" {
		t.Fatalf("an unknown key: %v", err)
	}
	resp, err := http.Post(eps[2]+"/", "application/x-www-form-urlencoded", strings.NewReader("Action=ListQueues"))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("an unsigned query request: %v %v", err, resp.Status)
	}
	resp.Body.Close()
}
