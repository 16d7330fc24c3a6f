package sqsapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/raftq/raftq/httpapi"
)

type queueURLOut struct {
	QueueUrl string `json:"QueueUrl"`
}

// createQueue makes the queue (a raftq queue of that name), or answers the
// URL of one that exists with the same attributes (QueueNameExists when
// they differ). Attributes raftq does not have are refused rather than
// ignored.
func (s *server) createQueue(ctx context.Context, body []byte) (any, error) {
	var in struct {
		QueueName  string            `json:"QueueName"`
		Attributes map[string]string `json:"Attributes"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.QueueName == "" {
		return nil, errMissingParameter("QueueName")
	}
	if err := checkName(in.QueueName); err != nil {
		return nil, err
	}
	fifo := in.Attributes["FifoQueue"]
	delete(in.Attributes, "FifoQueue")
	switch {
	case isFIFO(in.QueueName) && fifo != "true":
		return nil, errInvalidParameter("a queue named .fifo is a FIFO queue: set FifoQueue=true")
	case !isFIFO(in.QueueName) && fifo != "" && fifo != "false":
		return nil, errInvalidParameter("a FIFO queue's name ends in .fifo")
	}
	ch, err := s.configFromAttributes(in.QueueName, in.Attributes)
	if err != nil {
		return nil, err
	}
	if err := s.checkDeadLetterQueue(ctx, ch); err != nil {
		return nil, err
	}
	st, err := s.q.Stats(ctx, in.QueueName)
	switch {
	case err == nil:
		if !sameConfig(ch, st.Config) {
			return nil, &Error{Code: "QueueNameExists", QueryCode: "QueueAlreadyExists",
				Message: fmt.Sprintf("a queue named %s exists with other attributes", in.QueueName)}
		}
		return queueURLOut{s.queueURL(in.QueueName)}, nil
	case !isNotFound(err):
		return nil, err
	}
	if ch.MaxDeliveries == nil {
		zero := int64(0) // no limit: the default, so the queue is made as it is
		ch.MaxMessages = &zero
	}
	if _, _, err := s.q.Configure(ctx, in.QueueName, ch); err != nil {
		return nil, err
	}
	return queueURLOut{s.queueURL(in.QueueName)}, nil
}

// sameConfig reports whether every field ch sets has its value in c.
func sameConfig(ch httpapi.ConfigChange, c httpapi.QueueConfig) bool {
	same := func(p *int64, v int64) bool { return p == nil || *p == v }
	return (ch.MaxDeliveries == nil || *ch.MaxDeliveries == c.MaxDeliveries) &&
		(ch.DeadLetterQueue == nil || *ch.DeadLetterQueue == c.DeadLetterQueue) &&
		same(ch.VisibilityTimeoutMS, c.VisibilityTimeoutMS) && same(ch.DelayMS, c.DelayMS) &&
		same(ch.ReceiveWaitMS, c.ReceiveWaitMS) && same(ch.MaxMessageSize, c.MaxMessageSize) &&
		same(ch.RetentionMS, c.RetentionMS) && (ch.ContentDedup == nil || *ch.ContentDedup == c.ContentDedup)
}

// secondsAttributes are the queue attributes that are a number of
// seconds (bytes for MaximumMessageSize) kept in raftq's queue config,
// with their ranges.
var secondsAttributes = map[string]struct {
	min, max, unit int64
	field          func(*httpapi.ConfigChange) **int64
}{
	"VisibilityTimeout":             {0, MaxVisibility, 1000, func(c *httpapi.ConfigChange) **int64 { return &c.VisibilityTimeoutMS }},
	"DelaySeconds":                  {0, MaxDelaySeconds, 1000, func(c *httpapi.ConfigChange) **int64 { return &c.DelayMS }},
	"ReceiveMessageWaitTimeSeconds": {0, MaxWaitSeconds, 1000, func(c *httpapi.ConfigChange) **int64 { return &c.ReceiveWaitMS }},
	"MessageRetentionPeriod":        {60, 1209600, 1000, func(c *httpapi.ConfigChange) **int64 { return &c.RetentionMS }},
	"MaximumMessageSize":            {1024, MaxMessageSize, 1, func(c *httpapi.ConfigChange) **int64 { return &c.MaxMessageSize }},
}

// configFromAttributes maps the attributes a CreateQueue or
// SetQueueAttributes sets onto raftq's queue config. A VisibilityTimeout
// of 0 is kept as 1 ms (0 is raftq's "none"), served as raftq's shortest
// lease and answered as 0.
func (s *server) configFromAttributes(queue string, attrs map[string]string) (httpapi.ConfigChange, error) {
	var ch httpapi.ConfigChange
	for name, v := range attrs {
		if a, ok := secondsAttributes[name]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < a.min || n > a.max {
				return ch, &Error{Code: "InvalidAttributeValue", QueryCode: "InvalidAttributeValue",
					Message: fmt.Sprintf("%s must be %d to %d, got %q", name, a.min, a.max, v)}
			}
			n *= a.unit
			if name == "VisibilityTimeout" && n == 0 {
				n = 1
			}
			*a.field(&ch) = &n
			continue
		}
		switch name {
		case "ContentBasedDeduplication":
			if !isFIFO(queue) || v != "true" && v != "false" {
				return ch, &Error{Code: "InvalidAttributeName", QueryCode: "InvalidAttributeName",
					Message: "ContentBasedDeduplication is true or false, on FIFO queues only"}
			}
			b := v == "true"
			ch.ContentDedup = &b
		case "RedrivePolicy":
			if v == "" { // SQS: an empty policy removes it
				zero, none := uint64(0), ""
				ch.MaxDeliveries, ch.DeadLetterQueue = &zero, &none
				continue
			}
			var p struct {
				Target string          `json:"deadLetterTargetArn"`
				Max    json.RawMessage `json:"maxReceiveCount"`
			}
			if err := json.Unmarshal([]byte(v), &p); err != nil {
				return ch, errInvalidParameter("RedrivePolicy is a JSON object with deadLetterTargetArn and maxReceiveCount: " + err.Error())
			}
			max, err := strconv.ParseUint(strings.Trim(string(p.Max), `"`), 10, 64)
			if err != nil || max < 1 || max > 1000 {
				return ch, errInvalidParameter("RedrivePolicy maxReceiveCount must be 1 to 1000")
			}
			dlq := p.Target[strings.LastIndexByte(p.Target, ':')+1:]
			if p.Target != s.queueARN(dlq) || checkName(dlq) != nil {
				return ch, errInvalidParameter(fmt.Sprintf("RedrivePolicy deadLetterTargetArn %q is not a queue ARN", p.Target))
			}
			ch.MaxDeliveries, ch.DeadLetterQueue = &max, &dlq
		default:
			if d, ok := fixedAttributes(queue)[name]; ok && d == v {
				continue // raftq's own, fixed value: nothing to set
			}
			return ch, &Error{Code: "InvalidAttributeName", QueryCode: "InvalidAttributeName",
				Message: fmt.Sprintf("attribute %s=%s cannot be set", name, v)}
		}
	}
	return ch, nil
}

// checkDeadLetterQueue refuses a RedrivePolicy naming a queue that does
// not exist, as SQS does (raftq would otherwise make it at the first dead
// letter).
func (s *server) checkDeadLetterQueue(ctx context.Context, ch httpapi.ConfigChange) error {
	if ch.DeadLetterQueue == nil || *ch.DeadLetterQueue == "" {
		return nil
	}
	if _, err := s.exists(ctx, *ch.DeadLetterQueue); err != nil {
		if isNotFound(err) {
			return errInvalidParameter(fmt.Sprintf("RedrivePolicy: the dead-letter queue %s does not exist", *ch.DeadLetterQueue))
		}
		return err
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, httpapi.ErrNotFound) }

func (s *server) getQueueURL(ctx context.Context, body []byte) (any, error) {
	var in struct {
		QueueName string `json:"QueueName"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.QueueName == "" {
		return nil, errMissingParameter("QueueName")
	}
	if err := checkName(in.QueueName); err != nil {
		return nil, errNoQueue(in.QueueName)
	}
	if _, err := s.exists(ctx, in.QueueName); err != nil {
		return nil, err
	}
	return queueURLOut{s.queueURL(in.QueueName)}, nil
}

// listQueues lists the queues whose names are SQS names, sorted, from the
// one after NextToken (an opaque encoding of the last name listed).
func (s *server) listQueues(ctx context.Context, body []byte) (any, error) {
	var in struct {
		QueueNamePrefix string `json:"QueueNamePrefix"`
		MaxResults      *int   `json:"MaxResults"`
		NextToken       string `json:"NextToken"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	max := defaultListResults
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 1000 {
			return nil, errInvalidParameter("MaxResults must be 1 to 1000")
		}
		max = *in.MaxResults
	}
	after := ""
	if in.NextToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(in.NextToken)
		if err != nil {
			return nil, errInvalidParameter("NextToken is not one this endpoint gave")
		}
		after = string(b)
	}
	qs, err := s.q.Queues(ctx)
	if err != nil {
		return nil, err
	}
	out := struct {
		QueueUrls []string `json:"QueueUrls,omitempty"`
		NextToken string   `json:"NextToken,omitempty"`
	}{}
	for _, q := range qs { // sorted by name
		if q.Name <= after || !strings.HasPrefix(q.Name, in.QueueNamePrefix) || checkName(q.Name) != nil {
			continue
		}
		if len(out.QueueUrls) == max {
			if in.MaxResults != nil { // SQS gives a NextToken only when MaxResults was set
				out.NextToken = base64.RawURLEncoding.EncodeToString([]byte(lastName(out.QueueUrls)))
			}
			break
		}
		out.QueueUrls = append(out.QueueUrls, s.queueURL(q.Name))
	}
	return out, nil
}

func lastName(urls []string) string {
	u := urls[len(urls)-1]
	return u[strings.LastIndexByte(u, '/')+1:]
}

// queueURLIn is the QueueUrl of an action's input.
type queueURLIn struct {
	QueueUrl string `json:"QueueUrl"`
}

func (in queueURLIn) url() string { return in.QueueUrl }

// decodeFor decodes an action's input and returns the queue its QueueUrl
// names.
func decodeFor[T interface{ url() string }](body []byte, in *T) (string, error) {
	if err := decode(body, in); err != nil {
		return "", err
	}
	return queueOf((*in).url())
}

func (s *server) deleteQueue(ctx context.Context, body []byte) (any, error) {
	var in queueURLIn
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	if _, err := s.q.DeleteQueue(ctx, q); err != nil {
		if isNotFound(err) {
			return nil, errNoQueue(q)
		}
		return nil, err
	}
	return struct{}{}, nil
}

// purgeQueue drops the ready and delayed messages (as raftq's purge;
// in-flight ones stay, which SQS does not promise either way).
func (s *server) purgeQueue(ctx context.Context, body []byte) (any, error) {
	var in queueURLIn
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.q.Purge(ctx, q); err != nil {
		if isNotFound(err) {
			return nil, errNoQueue(q)
		}
		return nil, err
	}
	return struct{}{}, nil
}

// fixedAttributes are the queue attributes raftq answers but cannot set,
// with their values; SetQueueAttributes accepts them at those values.
func fixedAttributes(queue string) map[string]string {
	out := map[string]string{"SqsManagedSseEnabled": "false"}
	if isFIFO(queue) {
		out["DeduplicationScope"], out["FifoThroughputLimit"] = "queue", "perQueue"
	}
	return out
}

// visibilitySeconds is the queue's VisibilityTimeout (SQS's 30 s when
// none is set).
func visibilitySeconds(c httpapi.QueueConfig) int {
	if c.VisibilityTimeoutMS == 0 {
		return DefaultVisibility
	}
	return int(c.VisibilityTimeoutMS / 1000)
}

// queueAttributes are every attribute GetQueueAttributes answers for a
// queue whose stats are st. A queue with no retention set keeps its
// messages until they are taken; SQS's longest period is answered.
func (s *server) queueAttributes(st httpapi.QueueStats) map[string]string {
	c := st.Config
	or := func(v, def int64) string {
		if v == 0 {
			return strconv.FormatInt(def, 10)
		}
		return strconv.FormatInt(v, 10)
	}
	all := map[string]string{
		"ApproximateNumberOfMessages":           strconv.Itoa(st.Depth),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(st.Leased),
		"ApproximateNumberOfMessagesDelayed":    strconv.Itoa(st.Delayed),
		"QueueArn":                              s.queueARN(st.Queue),
		"VisibilityTimeout":                     strconv.Itoa(visibilitySeconds(c)),
		"DelaySeconds":                          strconv.FormatInt(c.DelayMS/1000, 10),
		"ReceiveMessageWaitTimeSeconds":         strconv.FormatInt(c.ReceiveWaitMS/1000, 10),
		"MessageRetentionPeriod":                or(c.RetentionMS/1000, 1209600),
		"MaximumMessageSize":                    or(c.MaxMessageSize, int64(s.opts.MaxMessageBytes)),
		"CreatedTimestamp":                      strconv.FormatInt(st.CreatedAt.Unix(), 10),
		"LastModifiedTimestamp":                 strconv.FormatInt(st.ModifiedAt.Unix(), 10),
	}
	for k, v := range fixedAttributes(st.Queue) {
		all[k] = v
	}
	if isFIFO(st.Queue) {
		all["FifoQueue"], all["ContentBasedDeduplication"] = "true", strconv.FormatBool(c.ContentDedup)
	}
	if c.DeadLetterQueue != "" && c.MaxDeliveries > 0 {
		p, _ := json.Marshal(map[string]any{"deadLetterTargetArn": s.queueARN(c.DeadLetterQueue), "maxReceiveCount": c.MaxDeliveries})
		all["RedrivePolicy"] = string(p)
	}
	return all
}

// attributeNames are every attribute name SQS knows: asked for one raftq
// does not have, GetQueueAttributes leaves it out, as SQS does.
var attributeNames = []string{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
	"ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "ContentBasedDeduplication", "DeduplicationScope",
	"DelaySeconds", "FifoQueue", "FifoThroughputLimit", "KmsDataKeyReusePeriodSeconds", "KmsMasterKeyId",
	"LastModifiedTimestamp", "MaximumMessageSize", "MessageRetentionPeriod", "Policy", "QueueArn",
	"ReceiveMessageWaitTimeSeconds", "RedriveAllowPolicy", "RedrivePolicy", "SqsManagedSseEnabled", "VisibilityTimeout"}

func (s *server) getQueueAttributes(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueURLIn
		AttributeNames []string `json:"AttributeNames"`
	}
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	st, err := s.exists(ctx, q)
	if err != nil {
		return nil, err
	}
	all := s.queueAttributes(st)
	out := map[string]string{}
	for _, name := range in.AttributeNames {
		switch {
		case name == "All":
			for k, v := range all {
				out[k] = v
			}
		case slices.Contains(attributeNames, name):
			if v, ok := all[name]; ok {
				out[name] = v
			}
		default:
			return nil, &Error{Code: "InvalidAttributeName", QueryCode: "InvalidAttributeName", Message: "unknown attribute " + name}
		}
	}
	return struct {
		Attributes map[string]string `json:"Attributes,omitempty"`
	}{out}, nil
}

func (s *server) setQueueAttributes(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueURLIn
		Attributes map[string]string `json:"Attributes"`
	}
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	if len(in.Attributes) == 0 {
		return nil, errMissingParameter("Attributes")
	}
	if _, ok := in.Attributes["FifoQueue"]; ok {
		return nil, &Error{Code: "InvalidAttributeName", QueryCode: "InvalidAttributeName", Message: "FifoQueue is set when the queue is made"}
	}
	ch, err := s.configFromAttributes(q, in.Attributes)
	if err != nil {
		return nil, err
	}
	if err := s.checkDeadLetterQueue(ctx, ch); err != nil {
		return nil, err
	}
	if _, err := s.exists(ctx, q); err != nil {
		return nil, err
	}
	if _, _, err := s.q.Configure(ctx, q, ch); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
