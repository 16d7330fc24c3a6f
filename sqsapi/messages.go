package sqsapi

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/raftq/raftq/httpapi"
)

// contentType is what SQS messages are stored with in raftq.
const contentType = "text/plain; charset=utf-8"

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// sendEntry is one message to send: SendMessage's input, or a batch
// entry.
type sendEntry struct {
	Id                      string                      `json:"Id"`
	MessageBody             string                      `json:"MessageBody"`
	DelaySeconds            *int                        `json:"DelaySeconds"`
	MessageAttributes       map[string]messageAttribute `json:"MessageAttributes"`
	MessageSystemAttributes map[string]any              `json:"MessageSystemAttributes"`
	MessageGroupId          string                      `json:"MessageGroupId"`
	MessageDeduplicationId  string                      `json:"MessageDeduplicationId"`
}

// options checks an entry for a queue whose stats are st, and returns
// what to enqueue it with: its attributes, its delay (the queue's
// DelaySeconds when it names none), and in a FIFO queue its group and
// deduplication id (SQS's rules: a group always, a deduplication id
// unless ContentBasedDeduplication, no delay of its own).
func (s *server) options(st httpapi.QueueStats, e sendEntry) (httpapi.EnqueueOptions, error) {
	var opts httpapi.EnqueueOptions
	max := s.opts.MaxMessageBytes
	if m := st.Config.MaxMessageSize; m > 0 && m < int64(max) {
		max = int(m)
	}
	attrs, err := attributesIn(e.MessageAttributes)
	if err != nil {
		return opts, err
	}
	size := len(e.MessageBody)
	for _, a := range attrs {
		size += len(a.Name) + len(a.Type) + len(a.Value)
	}
	fifo := isFIFO(st.Queue)
	switch {
	case e.MessageBody == "":
		return opts, errMissingParameter("MessageBody")
	case size > max:
		return opts, errInvalidParameter(fmt.Sprintf("the message and its attributes are %d bytes, over the queue's %d limit", size, max))
	case !validContents(e.MessageBody):
		return opts, &Error{Code: "InvalidMessageContents", QueryCode: "InvalidMessageContents",
			Message: "the message holds characters SQS does not allow (allowed: #x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF)"}
	case e.DelaySeconds != nil && (*e.DelaySeconds < 0 || *e.DelaySeconds > MaxDelaySeconds):
		return opts, errInvalidParameter(fmt.Sprintf("DelaySeconds must be 0 to %d", MaxDelaySeconds))
	case len(e.MessageSystemAttributes) > 0:
		return opts, errInvalidParameter("message system attributes (AWSTraceHeader) are not served")
	case !fifo && (e.MessageGroupId != "" || e.MessageDeduplicationId != ""):
		return opts, errInvalidParameter("MessageGroupId and MessageDeduplicationId are for FIFO queues")
	case fifo && e.MessageGroupId == "":
		return opts, errMissingParameter("MessageGroupId")
	case fifo && e.DelaySeconds != nil && *e.DelaySeconds != 0:
		return opts, errInvalidParameter("a message of a FIFO queue has no DelaySeconds of its own; set the queue's")
	case fifo && e.MessageDeduplicationId == "" && !st.Config.ContentDedup:
		return opts, errInvalidParameter("the queue has no ContentBasedDeduplication: MessageDeduplicationId is required")
	}
	opts.Attributes = attrs
	if e.DelaySeconds != nil {
		opts.Delay, opts.DelaySet = time.Duration(*e.DelaySeconds)*time.Second, true
	} else {
		opts.Delay, opts.DelaySet = time.Duration(st.Config.DelayMS)*time.Millisecond, true
	}
	if fifo {
		if err := httpapi.ValidateGroup(e.MessageGroupId); err != nil {
			return opts, errInvalidParameter("MessageGroupId: 1 to 128 of printable ASCII")
		}
		opts.Group, opts.Dedupe, opts.IdempotencyKey = e.MessageGroupId, true, e.MessageDeduplicationId
		if opts.IdempotencyKey == "" {
			opts.IdempotencyKey = contentDedupID(e.MessageBody)
		}
		if err := httpapi.ValidateGroup(opts.IdempotencyKey); err != nil {
			return opts, errInvalidParameter("MessageDeduplicationId: 1 to 128 of printable ASCII")
		}
	}
	return opts, nil
}

// sent is what a send answers for message id stored with opts.
func sent(queue string, id uint64, body string, opts httpapi.EnqueueOptions) map[string]string {
	out := map[string]string{"MessageId": messageID(queue, id), "MD5OfMessageBody": md5Hex(body)}
	if m := attributesMD5(opts.Attributes); m != "" {
		out["MD5OfMessageAttributes"] = m
	}
	if opts.Group != "" {
		out["SequenceNumber"] = sequenceNumber(id)
	}
	return out
}

func (s *server) send(ctx context.Context, st httpapi.QueueStats, e sendEntry) (map[string]string, error) {
	opts, err := s.options(st, e)
	if err != nil {
		return nil, err
	}
	r, _, err := s.q.Enqueue(ctx, st.Queue, contentType, []byte(e.MessageBody), opts)
	if err != nil {
		return nil, err
	}
	return sent(st.Queue, r.ID, e.MessageBody, opts), nil
}

// messageID is the SQS MessageId of raftq message id in queue, shaped as
// a UUID (frameworks parse it as one: Spring Cloud AWS does): the queue
// name's FNV-1a hash, then the id, with the version 8 and variant bits
// set. Unique per queue name for ever, as raftq's ids are.
func messageID(queue string, id uint64) string {
	h := fnv.New64a()
	h.Write([]byte(queue))
	hi, lo := h.Sum64(), id
	hi = hi&^(0xf<<12) | 0x8<<12 // version 8 (custom)
	b := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, hi), lo)
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant (the id's top two bits go; ids stay below 2^62)
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// validContents reports whether body holds only the characters SQS
// allows.
func validContents(body string) bool {
	for _, r := range body {
		switch {
		case r == 0x9, r == 0xA, r == 0xD, r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}

// sqsBody is a stored body as SQS can carry it: valid UTF-8, each byte
// that is not replaced by U+FFFD (as encoding/json would), so that the
// MD5 is of what the client receives.
func sqsBody(b string) string {
	if utf8.ValidString(b) {
		return b
	}
	var out strings.Builder
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRuneInString(b[i:])
		if r == utf8.RuneError && size == 1 {
			out.WriteRune(utf8.RuneError)
		} else {
			out.WriteString(b[i : i+size])
		}
		i += size
	}
	return out.String()
}

// sendMessage sends to a queue that exists (SQS does not make queues on
// send).
func (s *server) sendMessage(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueURLIn
		sendEntry
	}
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	st, err := s.exists(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.send(ctx, st, in.sendEntry)
}

// batchFailure is one failed entry of a batch.
type batchFailure struct {
	Id          string `json:"Id"`
	Code        string `json:"Code"`
	Message     string `json:"Message"`
	SenderFault bool   `json:"SenderFault"`
}

// batchIDs are the ids of a batch's entries.
func batchIDs[E interface{ entryID() string }](entries []E) []string {
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.entryID()
	}
	return ids
}

func (e sendEntry) entryID() string { return e.Id }
func (h handleIn) entryID() string  { return h.Id }

// checkBatch refuses a batch SQS would: none, more than 10, an id twice,
// or a bad id.
func checkBatch(ids []string) error {
	if len(ids) == 0 {
		return &Error{Code: "EmptyBatchRequest", QueryCode: "AWS.SimpleQueueService.EmptyBatchRequest", Message: "the batch has no entries"}
	}
	if len(ids) > MaxBatchEntries {
		return &Error{Code: "TooManyEntriesInBatchRequest", QueryCode: "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
			Message: fmt.Sprintf("a batch has at most %d entries, got %d", MaxBatchEntries, len(ids))}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || len(id) > 80 || strings.ContainsFunc(id, func(r rune) bool {
			return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) {
			return &Error{Code: "InvalidBatchEntryId", QueryCode: "AWS.SimpleQueueService.InvalidBatchEntryId", Message: fmt.Sprintf("batch entry id %q", id)}
		}
		if seen[id] {
			return &Error{Code: "BatchEntryIdsNotDistinct", QueryCode: "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", Message: "batch entry id " + id + " twice"}
		}
		seen[id] = true
	}
	return nil
}

// runBatch runs each entry at once (the node groups their proposals) and
// sorts the outcomes into Successful and Failed, in entry order.
func (s *server) runBatch(n int, id func(int) string, one func(int) (map[string]string, error)) (any, error) {
	ok := make([]map[string]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ok[i], errs[i] = one(i) })
	}
	wg.Wait()
	out := struct {
		Successful []map[string]string `json:"Successful"`
		Failed     []batchFailure      `json:"Failed"`
	}{Successful: []map[string]string{}, Failed: []batchFailure{}}
	for i := range n {
		if errs[i] != nil {
			e := s.sqsError("batch", errs[i])
			out.Failed = append(out.Failed, batchFailure{Id: id(i), Code: e.Code, Message: e.Message, SenderFault: !e.Server})
			continue
		}
		ok[i]["Id"] = id(i)
		out.Successful = append(out.Successful, ok[i])
	}
	return out, nil
}

func (s *server) sendMessageBatch(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueURLIn
		Entries []sendEntry `json:"Entries"`
	}
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	ids := batchIDs(in.Entries)
	total := 0
	for _, e := range in.Entries {
		total += len(e.MessageBody)
	}
	if err := checkBatch(ids); err != nil {
		return nil, err
	}
	if total > s.opts.MaxMessageBytes {
		return nil, &Error{Code: "BatchRequestTooLong", QueryCode: "AWS.SimpleQueueService.BatchRequestTooLong",
			Message: fmt.Sprintf("the batch's bodies are %d bytes, over %d", total, s.opts.MaxMessageBytes)}
	}
	st, err := s.exists(ctx, q)
	if err != nil {
		return nil, err
	}
	results, errs := s.sendInOrder(ctx, st, in.Entries)
	return s.runBatch(len(in.Entries), func(i int) string { return ids[i] },
		func(i int) (map[string]string, error) { return results[i], errs[i] })
}

// sendInOrder stores a batch's valid entries in their order, as one
// raftq batch (one entry, all or nothing; deduplicated entries of a FIFO
// queue answer the original's id). An invalid entry fails alone.
func (s *server) sendInOrder(ctx context.Context, st httpapi.QueueStats, entries []sendEntry) ([]map[string]string, []error) {
	results, errs := make([]map[string]string, len(entries)), make([]error, len(entries))
	var valid []int
	var msgs []httpapi.NewMessage
	for i, e := range entries {
		var opts httpapi.EnqueueOptions
		if opts, errs[i] = s.options(st, e); errs[i] == nil {
			valid = append(valid, i)
			msgs = append(msgs, httpapi.NewMessage{ContentType: contentType, Body: e.MessageBody, Options: opts})
		}
	}
	if len(msgs) == 0 {
		return results, errs
	}
	stored, _, err := s.q.EnqueueBatch(ctx, st.Queue, msgs)
	for k, i := range valid {
		if err != nil {
			errs[i] = err
			continue
		}
		results[i] = sent(st.Queue, stored[k].ID, entries[i].MessageBody, msgs[k].Options)
	}
	return results, errs
}

// A receipt handle names a lease: its queue, message id and lease token,
// base64url-encoded. Only the latest lease's handle acts on the message.
func receiptHandle(queue string, id uint64, token string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(queue + "\x00" + strconv.FormatUint(id, 10) + "\x00" + token))
}

func parseHandle(h string) (queue string, id uint64, token string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(h)
	parts := strings.Split(string(b), "\x00")
	if err != nil || len(parts) != 3 || parts[2] == "" {
		return "", 0, "", errBadHandle("the receipt handle is not one this endpoint gave")
	}
	id, err = strconv.ParseUint(parts[1], 10, 64)
	if err != nil || id == 0 || checkName(parts[0]) != nil {
		return "", 0, "", errBadHandle("the receipt handle is not one this endpoint gave")
	}
	return parts[0], id, parts[2], nil
}

// receiveMessage leases up to MaxNumberOfMessages messages for
// VisibilityTimeout (0 counts as raftq's shortest lease, 1 s), waiting up
// to WaitTimeSeconds, without proposing anything, while none is ready.
func (s *server) receiveMessage(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueURLIn
		MaxNumberOfMessages         *int     `json:"MaxNumberOfMessages"`
		VisibilityTimeout           *int     `json:"VisibilityTimeout"`
		WaitTimeSeconds             *int     `json:"WaitTimeSeconds"`
		AttributeNames              []string `json:"AttributeNames"`
		MessageSystemAttributeNames []string `json:"MessageSystemAttributeNames"`
		MessageAttributeNames       []string `json:"MessageAttributeNames"`
		ReceiveRequestAttemptId     string   `json:"ReceiveRequestAttemptId"`
	}
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	st, err := s.exists(ctx, q)
	if err != nil {
		return nil, err
	}
	max, vis, wait := 1, visibilitySeconds(st.Config), int(st.Config.ReceiveWaitMS/1000)
	if p := in.MaxNumberOfMessages; p != nil {
		if *p < 1 || *p > MaxReceive {
			return nil, errInvalidParameter(fmt.Sprintf("MaxNumberOfMessages must be 1 to %d", MaxReceive))
		}
		max = *p
	}
	if p := in.VisibilityTimeout; p != nil {
		if *p < 0 || *p > MaxVisibility {
			return nil, errInvalidParameter(fmt.Sprintf("VisibilityTimeout must be 0 to %d", MaxVisibility))
		}
		vis = *p
	}
	if p := in.WaitTimeSeconds; p != nil {
		if *p < 0 || *p > MaxWaitSeconds {
			return nil, errInvalidParameter(fmt.Sprintf("WaitTimeSeconds must be 0 to %d", MaxWaitSeconds))
		}
		wait = *p
	}
	ttl := maxDuration(time.Duration(vis)*time.Second, httpapi.MinLeaseTTL)
	attrs := wanted(append(in.AttributeNames, in.MessageSystemAttributeNames...))
	leases, err := s.leaseUpTo(ctx, q, max, ttl, time.Duration(wait)*time.Second)
	if err != nil && len(leases) == 0 {
		return nil, err
	}
	msgs := []map[string]any{}
	for _, l := range leases {
		body := sqsBody(l.Message.Body)
		m := map[string]any{"MessageId": messageID(q, l.Message.ID), "ReceiptHandle": receiptHandle(q, l.Message.ID, l.Token),
			"Body": body, "MD5OfBody": md5Hex(body)}
		if a := systemAttributes(attrs, l); len(a) > 0 {
			m["Attributes"] = a
		}
		if a := attributesOut(l.Message.Attributes, in.MessageAttributeNames); len(a) > 0 {
			m["MessageAttributes"], m["MD5OfMessageAttributes"] = attributesJSON(a), attributesMD5(a)
		}
		msgs = append(msgs, m)
	}
	return map[string]any{"Messages": msgs}, nil
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

func wanted(names []string) map[string]bool {
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

// leaseUpTo leases up to max messages, waiting up to wait as raftq's own
// long polls do (httpapi.LongPoll): proposing nothing while none is
// ready, under the endpoint's waiter cap.
func (s *server) leaseUpTo(ctx context.Context, q string, max int, ttl, wait time.Duration) ([]httpapi.Lease, error) {
	var out []httpapi.Lease
	err := httpapi.LongPoll(ctx, s.q, q, wait, max, s.opts.RequestTimeout, &s.waiters, func(ctx context.Context) (bool, error) {
		l, err := s.leaseBatch(ctx, q, max, ttl)
		out = append(out, l...)
		return len(l) > 0, err
	})
	return out, err
}

// leaseBatch leases up to max messages in one entry (in a FIFO queue,
// consecutive messages of a group, as SQS returns them).
func (s *server) leaseBatch(ctx context.Context, q string, max int, ttl time.Duration) ([]httpapi.Lease, error) {
	lctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	out, _, err := s.q.LeaseMany(lctx, q, ttl, max)
	return out, err
}

type handleIn struct {
	Id            string `json:"Id"`
	ReceiptHandle string `json:"ReceiptHandle"`
}

// deleteOne acks a lease. A handle of an older lease, or of a message
// gone, deletes nothing and succeeds, as in SQS.
func (s *server) deleteOne(ctx context.Context, queue, handle string) (map[string]string, error) {
	if handle == "" {
		return nil, errMissingParameter("ReceiptHandle")
	}
	hq, id, token, err := parseHandle(handle)
	if err != nil {
		return nil, err
	}
	if hq != queue {
		return nil, errBadHandle("the receipt handle belongs to another queue")
	}
	_, err = s.q.Ack(ctx, queue, id, token)
	if errors.Is(err, httpapi.ErrNotFound) {
		if _, qerr := s.exists(ctx, queue); qerr != nil { // the queue, not the message, is gone
			return nil, qerr
		}
	}
	if err == nil || errors.Is(err, httpapi.ErrConflict) || errors.Is(err, httpapi.ErrNotFound) {
		return map[string]string{}, nil
	}
	return nil, err
}

func (s *server) deleteMessage(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueURLIn
		ReceiptHandle string `json:"ReceiptHandle"`
	}
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	if _, err := s.deleteOne(ctx, q, in.ReceiptHandle); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (s *server) deleteMessageBatch(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueURLIn
		Entries []handleIn `json:"Entries"`
	}
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	ids := batchIDs(in.Entries)
	if err := checkBatch(ids); err != nil {
		return nil, err
	}
	return s.runBatch(len(ids), func(i int) string { return ids[i] },
		func(i int) (map[string]string, error) { return s.deleteOne(ctx, q, in.Entries[i].ReceiptHandle) })
}

// visibility sets a lease's remaining time: 0 releases the message (ready
// at once), else its lease ends that many seconds from now. A handle of
// an older lease is refused (MessageNotInflight), as in SQS.
func (s *server) visibility(ctx context.Context, queue, handle string, vis *int) (map[string]string, error) {
	if handle == "" {
		return nil, errMissingParameter("ReceiptHandle")
	}
	if vis == nil {
		return nil, errMissingParameter("VisibilityTimeout")
	}
	if *vis < 0 || *vis > MaxVisibility {
		return nil, errInvalidParameter(fmt.Sprintf("VisibilityTimeout must be 0 to %d", MaxVisibility))
	}
	hq, id, token, err := parseHandle(handle)
	if err != nil {
		return nil, err
	}
	if hq != queue {
		return nil, errBadHandle("the receipt handle belongs to another queue")
	}
	if *vis == 0 {
		_, err = s.q.Release(ctx, queue, id, token, 0)
	} else {
		_, _, err = s.q.Extend(ctx, queue, id, token, time.Duration(*vis)*time.Second)
	}
	if errors.Is(err, httpapi.ErrNotFound) {
		if _, qerr := s.exists(ctx, queue); qerr != nil {
			return nil, qerr
		}
	}
	if errors.Is(err, httpapi.ErrConflict) || errors.Is(err, httpapi.ErrNotFound) {
		return nil, &Error{Code: "MessageNotInflight", QueryCode: "AWS.SimpleQueueService.MessageNotInflight", Message: "the message is not in flight under this receipt handle"}
	}
	if err != nil {
		return nil, err
	}
	return map[string]string{}, nil
}

func (s *server) changeVisibility(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueURLIn
		ReceiptHandle     string `json:"ReceiptHandle"`
		VisibilityTimeout *int   `json:"VisibilityTimeout"`
	}
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	if _, err := s.visibility(ctx, q, in.ReceiptHandle, in.VisibilityTimeout); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (s *server) changeVisibilityBatch(ctx context.Context, body []byte) (any, error) {
	var in struct {
		queueURLIn
		Entries []struct {
			handleIn
			VisibilityTimeout *int `json:"VisibilityTimeout"`
		} `json:"Entries"`
	}
	q, err := decodeFor(body, &in)
	if err != nil {
		return nil, err
	}
	ids := batchIDs(in.Entries)
	if err := checkBatch(ids); err != nil {
		return nil, err
	}
	return s.runBatch(len(ids), func(i int) string { return ids[i] }, func(i int) (map[string]string, error) {
		return s.visibility(ctx, q, in.Entries[i].ReceiptHandle, in.Entries[i].VisibilityTimeout)
	})
}
