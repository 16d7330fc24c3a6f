// Package httpapi serves raftq's client API over HTTP with gorilla/mux. It
// depends only on the small Queue and Cluster interfaces below.
package httpapi

import (
	"context"
	"errors"
	"time"
)

// Errors that implementations of Queue and Cluster wrap so that the API can
// choose a status. Any other error is a 500.
var (
	// ErrStopping: the node is shutting down; long polls answer at once.
	ErrStopping = errors.New("node is shutting down")
	// ErrTooManyWaiters: too many long polls wait on this node (429).
	ErrTooManyWaiters = errors.New("too many waiting requests")
	// ErrInvalid: the request is malformed (400).
	ErrInvalid = errors.New("invalid request")
	// ErrUnavailable: no quorum, no leader, or the deadline passed (503).
	// For a write the outcome may be unknown; the message says which.
	ErrUnavailable = errors.New("unavailable")
	// ErrNotApplied, wrapped with ErrUnavailable or ErrOverloaded: the
	// write was never appended to the log, so it definitely did not happen
	// and is safe to retry. A 503 without it leaves the outcome of a write
	// unknown.
	ErrNotApplied = errors.New("not applied")
	// ErrNotFound: no such member (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change contradicts the cluster's state (409).
	ErrConflict = errors.New("conflict")
	// ErrUnprocessable: an idempotency key came back with another message
	// (422).
	ErrUnprocessable = errors.New("unprocessable")
	// ErrGatewayTimeout: an awaited change (a leadership transfer) did not
	// happen in time (504).
	ErrGatewayTimeout = errors.New("timed out")
	// ErrQueueFull: the queue's own limit (max_messages, max_bytes) refused
	// the write (429 with Retry-After: 1). Wrapped in a *LimitError.
	ErrQueueFull = errors.New("queue full")
	// ErrStorageFull: the cluster's budget (max_bytes, max_queues), in a
	// *LimitError, or a raised disk alarm, in an *AlarmError, refused the
	// write (507).
	ErrStorageFull = errors.New("insufficient storage")
	// ErrOverloaded: the node refuses new proposals for now (it is far
	// behind applying, or the leader's log holds too much not yet
	// committed): 429 with Retry-After: 1. Wrapped with ErrNotApplied.
	ErrOverloaded = errors.New("overloaded")
	// ErrQueueDeleted: the queue was deleted while a long poll waited on
	// it; the poll answers 204 at once, as at shutdown.
	ErrQueueDeleted = errors.New("queue deleted")
	// ErrTooLarge: the message is over its queue's max_message_size (413).
	ErrTooLarge = errors.New("message too large")
)

// LeaderElsewhereError: only the leader can answer; the API forwards the
// request once to URL, the leader's client API.
type LeaderElsewhereError struct{ URL string }

func (e *LeaderElsewhereError) Error() string {
	return "only the leader can answer this; it is at " + e.URL
}

// Message is a message as stored.
type Message struct {
	ID          uint64
	ContentType string
	Body        string
	Deliveries  uint64  // times leased so far
	Origin      *Origin // set on dead letters
	Group       string  // its message group ("" for none)
	Attributes  []Attribute
	// Enqueued is when it was stored, on this node's clock, to the second
	// (zero where not known).
	Enqueued time.Time
}

// Attribute is a message attribute: a name, a data type (String, Number
// or Binary, each with an optional ".label", as SQS has them) and the
// value's bytes.
type Attribute struct {
	Name, Type, Value string
}

// NewMessage is one message of a batch enqueue.
type NewMessage struct {
	ContentType string
	Body        string
	Options     EnqueueOptions
}

// Origin says where a dead letter came from.
type Origin struct {
	Queue      string
	ID         uint64
	Deliveries uint64
}

// Lease is a leased message: it is invisible to others until Expires,
// and only Token can ack, release or extend it.
type Lease struct {
	Message Message
	Token   string
	Expires time.Time
}

// EnqueueOptions are the optional headers of an enqueue. Delay is the
// queue's delay_ms when not DelaySet.
type EnqueueOptions struct {
	IdempotencyKey string
	Delay          time.Duration
	DelaySet       bool
	Group          string
	Attributes     []Attribute
	// Dedupe: a key that comes back with another message answers the
	// original's id (SQS's deduplication) instead of ErrUnprocessable.
	Dedupe bool
}

// Enqueued is an enqueue's outcome. Replay: the idempotency key was seen
// within the window; nothing was stored and ID is the original's.
type Enqueued struct {
	ID     uint64
	Replay bool
}

// QueueConfig is a queue's whole configuration; 0 and "" mean none (for
// the three defaults: the API's own default).
type QueueConfig struct {
	MaxDeliveries   uint64 `json:"max_deliveries"`
	DeadLetterQueue string `json:"dead_letter_queue"`
	MaxMessages     int64  `json:"max_messages"`
	MaxBytes        int64  `json:"max_bytes"`
	// VisibilityTimeoutMS is the lease ttl of a lease that names none;
	// DelayMS the delay of an enqueue without a Delay header;
	// ReceiveWaitMS the wait of a take without ?wait=.
	VisibilityTimeoutMS int64 `json:"visibility_timeout_ms"`
	DelayMS             int64 `json:"delay_ms"`
	ReceiveWaitMS       int64 `json:"receive_wait_ms"`
	// MaxMessageSize bounds body plus attributes (names, types, values).
	MaxMessageSize int64 `json:"max_message_size"`
	// RetentionMS: a message stored longer is dropped, leased or not.
	RetentionMS int64 `json:"retention_ms"`
	// ContentDedup is SQS's ContentBasedDeduplication (FIFO queues).
	ContentDedup bool `json:"content_dedup"`
}

// ConfigChange is the body of PUT /queues/{q}/config: the fields present
// are set, the nil ones keep their value.
type ConfigChange struct {
	MaxDeliveries       *uint64 `json:"max_deliveries"`
	DeadLetterQueue     *string `json:"dead_letter_queue"`
	MaxMessages         *int64  `json:"max_messages"`
	MaxBytes            *int64  `json:"max_bytes"`
	VisibilityTimeoutMS *int64  `json:"visibility_timeout_ms"`
	DelayMS             *int64  `json:"delay_ms"`
	ReceiveWaitMS       *int64  `json:"receive_wait_ms"`
	MaxMessageSize      *int64  `json:"max_message_size"`
	RetentionMS         *int64  `json:"retention_ms"`
	ContentDedup        *bool   `json:"content_dedup"`
}

// ClusterLimits are the cluster's limits (0: none), their usage and the
// nodes whose disk alarm is raised: GET /mgmt/limits.
type ClusterLimits struct {
	MaxQueues int64    `json:"max_queues"`
	MaxBytes  int64    `json:"max_bytes"`
	Queues    int      `json:"queues"`
	Bytes     int64    `json:"bytes"`
	Alarms    []uint64 `json:"alarms"`
}

// LimitsChange is the body of PUT /mgmt/limits: the fields present are
// set, the nil ones keep their value.
type LimitsChange struct {
	MaxQueues *int64 `json:"max_queues"`
	MaxBytes  *int64 `json:"max_bytes"`
}

// QueueStats describe one queue: GET /queues/{q}/stats.
type QueueStats struct {
	Queue   string `json:"queue"`
	Depth   int    `json:"depth"` // ready
	Leased  int    `json:"leased"`
	Delayed int    `json:"delayed"`
	Bytes   int64  `json:"bytes"` // what its messages and keys count against max_bytes
	Keys    int    `json:"keys"`  // idempotency keys remembered
	// OldestReadyAgeMS is how long the oldest ready message has been
	// stored, to the second (0 when none is ready).
	OldestReadyAgeMS int64       `json:"oldest_ready_age_ms"`
	Config           QueueConfig `json:"config"`
	Totals           QueueTotals `json:"totals"`
	// CreatedAt and ModifiedAt are when the queue was made and last
	// configured, on this node's clock.
	CreatedAt  time.Time `json:"created_at"`
	ModifiedAt time.Time `json:"modified_at"`
}

// QueueTotals count a queue's messages since it was made: enqueued is
// what is stored plus the five others.
type QueueTotals struct {
	Enqueued     uint64 `json:"enqueued"`
	Popped       uint64 `json:"popped"`
	Acked        uint64 `json:"acked"`
	DeadLettered uint64 `json:"dead_lettered"`
	Purged       uint64 `json:"purged"`
	Expired      uint64 `json:"expired"` // dropped at the end of the queue's retention
}

// LogPosition is where in the raft log a write was decided.
type LogPosition struct {
	Index, Term uint64
}

// QueueInfo describes one queue.
type QueueInfo struct {
	Name    string `json:"name"`
	Depth   int    `json:"depth"` // ready
	Leased  int    `json:"leased"`
	Delayed int    `json:"delayed"`
}

// Queue is the replicated queue. Every method is linearizable.
type Queue interface {
	// Enqueue appends a message and returns its id once it is committed and
	// applied.
	Enqueue(ctx context.Context, queue, contentType string, body []byte, opts EnqueueOptions) (Enqueued, LogPosition, error)
	// Dequeue removes and returns the head; found is false when empty.
	Dequeue(ctx context.Context, queue string) (m Message, found bool, pos LogPosition, err error)
	// EnqueueBatch appends messages in one entry, all or nothing, and
	// returns their outcomes in order (a message whose key was seen, in
	// the window or earlier in the batch, is a replay).
	EnqueueBatch(ctx context.Context, queue string, msgs []NewMessage) ([]Enqueued, LogPosition, error)
	// PopMany removes and returns up to max messages, oldest first.
	PopMany(ctx context.Context, queue string, max int) ([]Message, LogPosition, error)
	// Lease leases the head ready message for ttl; found is false when
	// none is ready.
	Lease(ctx context.Context, queue string, ttl time.Duration) (l Lease, found bool, pos LogPosition, err error)
	// LeaseMany leases up to max ready messages for ttl in one entry, in
	// the order leases would take them but for a message group it takes
	// from, whose next messages follow (none when nothing is ready).
	LeaseMany(ctx context.Context, queue string, ttl time.Duration, max int) ([]Lease, LogPosition, error)
	// Ack removes a leased message for good.
	Ack(ctx context.Context, queue string, id uint64, token string) (LogPosition, error)
	// Release makes a leased message ready again, after delay.
	Release(ctx context.Context, queue string, id uint64, token string, delay time.Duration) (LogPosition, error)
	// Extend moves a lease's expiry to now + ttl.
	Extend(ctx context.Context, queue string, id uint64, token string, ttl time.Duration) (time.Time, LogPosition, error)
	// Configure sets the fields of a queue's configuration that ch names,
	// making the queue if need be, and returns its whole configuration.
	Configure(ctx context.Context, queue string, ch ConfigChange) (QueueConfig, LogPosition, error)
	// DeleteQueue removes a queue with its messages, keys and config
	// (ErrNotFound when unknown); its waiting long polls are answered.
	DeleteQueue(ctx context.Context, queue string) (LogPosition, error)
	// Purge drops a queue's ready and delayed messages (leased ones stay)
	// and returns how many it dropped; ErrNotFound when unknown.
	Purge(ctx context.Context, queue string) (int, LogPosition, error)
	// Peek returns up to max ready messages, oldest first, taking none;
	// ErrNotFound when unknown.
	Peek(ctx context.Context, queue string, max int) ([]Message, error)
	// Stats describes a queue; ErrNotFound when unknown.
	Stats(ctx context.Context, queue string) (QueueStats, error)
	// Limits returns the cluster's limits and their usage.
	Limits(ctx context.Context) (ClusterLimits, error)
	// SetLimits sets the cluster limits ch names and returns them all.
	SetLimits(ctx context.Context, ch LimitsChange) (ClusterLimits, LogPosition, error)
	// ClearAlarm clears node's disk space alarm (a no-op when it is not
	// raised) and returns the limits after.
	ClearAlarm(ctx context.Context, node uint64) (ClusterLimits, LogPosition, error)
	// Queues lists every queue, sorted by name.
	Queues(ctx context.Context) ([]QueueInfo, error)
	// AwaitReady waits, proposing nothing, until messages may be ready in
	// queue for this caller, who wants up to want of them: it returns a
	// Turn, whose Done the caller calls once its take is over (found or
	// not). It returns ctx's error when ctx ends first, and ErrStopping
	// when the node shuts down.
	AwaitReady(ctx context.Context, queue string, want int) (Turn, error)
	// HasReady reports, after a read barrier (no log entry), whether queue
	// has a ready message.
	HasReady(ctx context.Context, queue string) (bool, error)
	// AllStats describes up to limit queues by name after after ("" from
	// the first), after one read barrier; more says others follow.
	AllStats(ctx context.Context, after string, limit int) (st []QueueStats, more bool, err error)
	// Defaults returns the queue's config as this node holds it, without a
	// read barrier (zero for an unknown queue): for the defaults a request
	// that names none gets. Not linearizable.
	Defaults(queue string) QueueConfig
}

// Turn is a long poll's right to take one message; see Queue.AwaitReady.
// Done hands it back. Deleted reports whether the queue was deleted while
// the turn was out: the poll then answers empty at once, as its waiting
// peers were answered, instead of waiting on again.
type Turn interface {
	Done()
	Deleted() bool
}

// Node is one member as /mgmt/nodes shows it.
type Node struct {
	ID       uint64   `json:"id"`
	PeerURLs []string `json:"peer_urls"`
	// APIURL is the client API the node published ("" until it has).
	APIURL   string `json:"api_url"`
	Learner  bool   `json:"learner"`
	IsLeader bool   `json:"is_leader"`
}

// NodeSpec is the body of POST /mgmt/nodes.
type NodeSpec struct {
	ID      uint64 `json:"id"`
	PeerURL string `json:"peer_url"`
	Learner bool   `json:"learner"`
}

// Nodes is the answer of GET /mgmt/nodes.
type Nodes struct {
	Leader uint64 `json:"leader"`
	Nodes  []Node `json:"nodes"`
}

// LocalState is what one node has applied, read locally without any
// barrier: GET /debug/state. Nodes that applied the same index must show
// the same hash.
type LocalState struct {
	ID      uint64 `json:"id"`
	Leader  uint64 `json:"leader"`
	Applied uint64 `json:"applied"`
	// Hash is the SHA-256 of the state machine's snapshot bytes at Applied.
	Hash string `json:"hash"`
}

// Cluster is the membership view and its changes. Each change returns
// once it is committed and applied by the answering node.
type Cluster interface {
	Nodes(ctx context.Context) (Nodes, error)
	LocalState() (LocalState, error)
	// Counters are the node's own counts since it started (GET
	// /debug/counters): what its raft machinery did, by name.
	Counters() map[string]uint64
	AddNode(ctx context.Context, spec NodeSpec) (Node, error)
	RemoveNode(ctx context.Context, id uint64) (Nodes, error)
	PromoteNode(ctx context.Context, id uint64) (Node, error)
	TransferLeader(ctx context.Context, id uint64) (Nodes, error)
}
