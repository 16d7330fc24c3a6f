package sqsapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"go.uber.org/zap"

	"github.com/raftq/raftq/httpapi"
)

type keys map[string]struct {
	secret string
	roles  []httpapi.Role
}

func (k keys) Secret(id string) (string, []httpapi.Role, bool) {
	e, ok := k[id]
	return e.secret, e.roles, ok
}

// signed is a request signed by the AWS SDK's own SigV4 signer.
func signed(t *testing.T, method, target, body, id, secret string, at time.Time) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-amz-json-1.0")
	r.Header.Set("X-Amz-Target", "AmazonSQS.SendMessage")
	sum := sha256.Sum256([]byte(body))
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, r,
		hex.EncodeToString(sum[:]), "sqs", "us-east-1", at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Signatures made by the AWS SDK's signer verify; a changed body, another
// secret, an unknown key, a stale date, a missing signature or a key
// without the action's role are refused with SQS's codes.
func TestSigV4(t *testing.T) {
	now := time.Now()
	s := NewHandler(nil, zap.NewNop(), Options{Credentials: keys{
		"PRODUCER": {"tok-p", []httpapi.Role{httpapi.RoleProducer}},
		"CONSUMER": {"tok-c", []httpapi.Role{httpapi.RoleConsumer}}}}).(*server)
	body := `{"QueueUrl":"http://h/000000000000/q","MessageBody":"hi"}`
	check := func(r *http.Request, b, action, code string) {
		t.Helper()
		err := s.authorize(r, []byte(b), action, now)
		var e *Error
		switch {
		case code == "" && err != nil:
			t.Errorf("%s: %v", action, err)
		case code != "" && (!errors.As(err, &e) || e.Code != code || e.Status != http.StatusForbidden):
			t.Errorf("want %s, got %v", code, err)
		}
	}
	check(signed(t, "POST", "http://127.0.0.1:19324/", body, "PRODUCER", "tok-p", now), body, "SendMessage", "")
	check(signed(t, "POST", "http://127.0.0.1:19324/000000000000/q.fifo", body, "PRODUCER", "tok-p", now), body, "SendMessage", "")
	check(signed(t, "GET", "http://127.0.0.1:19324/?Action=ListQueues&QueueNamePrefix=a%20b*", "", "CONSUMER", "tok-c", now), "", "ListQueues", "")
	check(signed(t, "POST", "http://127.0.0.1:19324/", body, "PRODUCER", "tok-p", now), body+" ", "SendMessage", "SignatureDoesNotMatch")
	check(signed(t, "POST", "http://127.0.0.1:19324/", body, "PRODUCER", "wrong", now), body, "SendMessage", "SignatureDoesNotMatch")
	check(signed(t, "POST", "http://127.0.0.1:19324/", body, "NOBODY", "tok-p", now), body, "SendMessage", "InvalidClientTokenId")
	check(signed(t, "POST", "http://127.0.0.1:19324/", body, "PRODUCER", "tok-p", now.Add(-20*time.Minute)), body, "SendMessage", "RequestExpired")
	check(signed(t, "POST", "http://127.0.0.1:19324/", body, "CONSUMER", "tok-c", now), body, "SendMessage", "AccessDenied")
	check(httptest.NewRequest("POST", "http://127.0.0.1:19324/", strings.NewReader(body)), body, "SendMessage", "MissingAuthenticationToken")
	r := signed(t, "POST", "http://127.0.0.1:19324/", body, "PRODUCER", "tok-p", now)
	r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=", "X=", 1))
	check(r, body, "SendMessage", "IncompleteSignature")
}
