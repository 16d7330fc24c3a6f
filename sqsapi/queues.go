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
// they differ). Of the attributes only RedrivePolicy is served; the
// others are refused rather than ignored.
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
	ch, err := s.configFromAttributes(in.Attributes)
	if err != nil {
		return nil, err
	}
	if err := s.checkDeadLetterQueue(ctx, ch); err != nil {
		return nil, err
	}
	st, err := s.q.Stats(ctx, in.QueueName)
	switch {
	case err == nil:
		if in.Attributes != nil && (ch.MaxDeliveries != nil && *ch.MaxDeliveries != st.Config.MaxDeliveries ||
			ch.DeadLetterQueue != nil && *ch.DeadLetterQueue != st.Config.DeadLetterQueue) {
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

// configFromAttributes maps the attributes a CreateQueue or
// SetQueueAttributes sets onto raftq's queue config.
func (s *server) configFromAttributes(attrs map[string]string) (httpapi.ConfigChange, error) {
	var ch httpapi.ConfigChange
	for name, v := range attrs {
		switch name {
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
			if d, ok := fixedAttributes[name]; ok && d == v {
				continue // raftq's own, fixed value: nothing to set
			}
			return ch, &Error{Code: "InvalidAttributeName", QueryCode: "InvalidAttributeName",
				Message: fmt.Sprintf("attribute %s=%s cannot be set yet (only RedrivePolicy can; %s is fixed at %q)", name, v, name, fixedAttributes[name])}
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

// fixedAttributes are the queue attributes raftq has but cannot set yet,
// with their values (MessageRetentionPeriod: raftq keeps messages until
// they are taken; SQS's longest period is answered).
var fixedAttributes = map[string]string{"DelaySeconds": "0", "MaximumMessageSize": strconv.Itoa(MaxMessageSize),
	"MessageRetentionPeriod": "1209600", "ReceiveMessageWaitTimeSeconds": "0", "VisibilityTimeout": strconv.Itoa(DefaultVisibility)}

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
	all := map[string]string{
		"ApproximateNumberOfMessages":           strconv.Itoa(st.Depth),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(st.Leased),
		"ApproximateNumberOfMessagesDelayed":    strconv.Itoa(st.Delayed),
		"QueueArn":                              s.queueARN(q),
	}
	for k, v := range fixedAttributes {
		all[k] = v
	}
	if c := st.Config; c.DeadLetterQueue != "" && c.MaxDeliveries > 0 {
		p, _ := json.Marshal(map[string]any{"deadLetterTargetArn": s.queueARN(c.DeadLetterQueue), "maxReceiveCount": c.MaxDeliveries})
		all["RedrivePolicy"] = string(p)
	}
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
	ch, err := s.configFromAttributes(in.Attributes)
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
