// Package sqsapi serves an Amazon SQS-compatible endpoint over raftq's
// queues: the AWS JSON 1.0 protocol that current AWS SDKs speak
// (X-Amz-Target: AmazonSQS.<Action>), for standard and FIFO queues. An
// SQS queue and the raftq queue of the same name are the same queue: a
// receive is a lease, a receipt handle names the lease, a delete is an
// ack, a FIFO queue's message groups are raftq's, its deduplication ids
// raftq's idempotency keys.
//
// It speaks to raftq through httpapi.Queue only, as raftq's own HTTP API
// does. Not yet served: the query protocol and SigV4 checks (see the
// README).
package sqsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/raftq/raftq/httpapi"
)

// SQS's limits, as AWS documents them.
const (
	MaxBatchEntries    = 10
	MaxReceive         = 10
	MaxWaitSeconds     = 20
	MaxVisibility      = 43200
	MaxDelaySeconds    = 900
	DefaultVisibility  = 30
	MaxMessageSize     = 1 << 20
	maxRequestBody     = 2 << 20
	defaultListResults = 1000
)

// Options configure the endpoint.
type Options struct {
	// BaseURL is what queue URLs start with: this node's advertised SQS
	// address, as http://host:port.
	BaseURL string
	// Account is the account id in queue URLs and ARNs.
	Account string
	// Region is the region in ARNs.
	Region string
	// RequestTimeout bounds each replicated operation.
	RequestTimeout time.Duration
	// MaxMessageBytes is the largest body (at most MaxMessageSize; raftq's
	// --max-message-bytes when smaller).
	MaxMessageBytes int
	// MaxWaiters bounds the receives waiting at once (WaitTimeSeconds > 0)
	// on this endpoint; past it a receive is refused (OverLimit).
	MaxWaiters int
	// Credentials, when set, check every request's SigV4 signature and
	// its key's role (see Credentials); nil accepts any signature.
	Credentials Credentials
}

type server struct {
	q       httpapi.Queue
	opts    Options
	lg      *zap.Logger
	waiters httpapi.WaiterCap
}

// NewHandler returns the SQS endpoint's handler: POST / and POST
// /<account>/<queue>, told apart from anything else by X-Amz-Target.
func NewHandler(q httpapi.Queue, lg *zap.Logger, opts Options) http.Handler {
	if opts.Account == "" {
		opts.Account = "000000000000"
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = httpapi.DefaultRequestTimeout
	}
	if opts.MaxMessageBytes <= 0 || opts.MaxMessageBytes > MaxMessageSize {
		opts.MaxMessageBytes = MaxMessageSize
	}
	if opts.MaxWaiters <= 0 {
		opts.MaxWaiters = httpapi.DefaultMaxWaiters
	}
	s := &server{q: q, opts: opts, lg: lg}
	s.waiters.Max = opts.MaxWaiters
	return s
}

// action is one SQS action: it decodes its JSON input into its own type
// and returns the JSON output or an *Error.
type action func(s *server, ctx context.Context, body []byte) (any, error)

var actions = map[string]action{
	"CreateQueue":                  (*server).createQueue,
	"GetQueueUrl":                  (*server).getQueueURL,
	"ListQueues":                   (*server).listQueues,
	"DeleteQueue":                  (*server).deleteQueue,
	"PurgeQueue":                   (*server).purgeQueue,
	"GetQueueAttributes":           (*server).getQueueAttributes,
	"SetQueueAttributes":           (*server).setQueueAttributes,
	"SendMessage":                  (*server).sendMessage,
	"SendMessageBatch":             (*server).sendMessageBatch,
	"ReceiveMessage":               (*server).receiveMessage,
	"DeleteMessage":                (*server).deleteMessage,
	"DeleteMessageBatch":           (*server).deleteMessageBatch,
	"ChangeMessageVisibility":      (*server).changeVisibility,
	"ChangeMessageVisibilityBatch": (*server).changeVisibilityBatch,
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	name, ok := strings.CutPrefix(target, "AmazonSQS.")
	isJSON := ok && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.0")
	isQuery := !isJSON && (r.Method == http.MethodGet && r.URL.Query().Get("Action") != "" ||
		r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"))
	if !isJSON && !isQuery || isJSON && r.Method != http.MethodPost {
		writeError(w, errInvalidAction(fmt.Sprintf("neither protocol: AWS JSON 1.0 is a POST with X-Amz-Target: AmazonSQS.<Action> and "+
			"Content-Type: application/x-amz-json-1.0 (got target %q); the query protocol a form-encoded POST or a GET with Action=", target)))
		return
	}
	fail := writeError
	if isQuery {
		fail = writeQueryError
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		fail(w, errInvalidParameter(fmt.Sprintf("the request body could not be read (at most %d bytes): %v", maxRequestBody, err)))
		return
	}
	var form url.Values
	if isQuery {
		if form, err = queryForm(r, body); err != nil {
			fail(w, errInvalidParameter("the form could not be read: "+err.Error()))
			return
		}
		name = form.Get("Action")
	}
	act, ok := actions[name]
	if !ok {
		fail(w, errInvalidAction(fmt.Sprintf("action %q is not served", name)))
		return
	}
	if err := s.authorize(r, body, name, time.Now()); err != nil {
		fail(w, s.sqsError(name, err))
		return
	}
	if isQuery {
		s.serveQuery(w, r, name, act, form)
		return
	}
	ctx, cancel := s.actionContext(r)
	defer cancel()
	out, err := act(s, ctx, body)
	if err != nil {
		writeError(w, s.sqsError(name, err))
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(out)
}

// actionContext bounds an action: its replicated operations and its
// longest wait.
func (s *server) actionContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opts.RequestTimeout+MaxWaitSeconds*time.Second)
}

// decode reads an action's JSON input; unknown fields are allowed (newer
// SDKs send fields older servers do not know), wrong types are not.
func decode(body []byte, v any) error {
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errInvalidParameter("malformed JSON input: " + err.Error())
	}
	return nil
}

// sqsName is what SQS accepts as a queue name: a FIFO queue's ends in
// ".fifo", within the 80. raftq queue names that are not SQS names (raftq
// allows "." elsewhere and up to 128 characters) are not listed and cannot
// be reached through SQS.
var sqsName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$|^[A-Za-z0-9_-]{1,75}\.fifo$`)

func checkName(name string) error {
	if !sqsName.MatchString(name) {
		return errInvalidParameter(fmt.Sprintf("queue name %q: 1 to 80 characters of letters, digits, - and _ (a FIFO queue's ending in .fifo)", name))
	}
	return nil
}

// isFIFO reports whether queue is a FIFO queue: SQS tells them by name.
func isFIFO(queue string) bool { return strings.HasSuffix(queue, ".fifo") }

// queueURL is the URL clients use for queue.
func (s *server) queueURL(queue string) string {
	return strings.TrimSuffix(s.opts.BaseURL, "/") + "/" + s.opts.Account + "/" + queue
}

func (s *server) queueARN(queue string) string {
	return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", s.opts.Region, s.opts.Account, queue)
}

// queueOf is the queue a QueueUrl names: its last path segment, whatever
// node's host it names (every node serves every queue).
func queueOf(url string) (string, error) {
	if url == "" {
		return "", errMissingParameter("QueueUrl")
	}
	i := strings.LastIndexByte(url, '/')
	name := url[i+1:]
	if err := checkName(name); err != nil {
		return "", errNoQueue(name)
	}
	return name, nil
}

// exists reports whether queue exists (ErrNotFound from Stats).
func (s *server) exists(ctx context.Context, queue string) (httpapi.QueueStats, error) {
	st, err := s.q.Stats(ctx, queue)
	if errors.Is(err, httpapi.ErrNotFound) {
		return st, errNoQueue(queue)
	}
	return st, err
}
