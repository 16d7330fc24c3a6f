package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// QueueInfo is a queue in the list of queues.
type QueueInfo struct {
	Name    string `json:"name"`
	Depth   int    `json:"depth"`
	Leased  int    `json:"leased"`
	Delayed int    `json:"delayed"`
}

// Queues lists every queue, sorted by name.
func (c *Client) Queues(ctx context.Context) ([]QueueInfo, error) {
	var out struct {
		Queues []QueueInfo `json:"queues"`
	}
	err := c.getJSON(ctx, "/queues", nil, &out)
	return out.Queues, err
}

// QueueConfig is a queue's configuration (0 and "" for none).
type QueueConfig struct {
	MaxDeliveries       uint64 `json:"max_deliveries"`
	DeadLetterQueue     string `json:"dead_letter_queue"`
	MaxMessages         int64  `json:"max_messages"`
	MaxBytes            int64  `json:"max_bytes"`
	VisibilityTimeoutMS int64  `json:"visibility_timeout_ms"`
	DelayMS             int64  `json:"delay_ms"`
	ReceiveWaitMS       int64  `json:"receive_wait_ms"`
	MaxMessageSize      int64  `json:"max_message_size"`
	RetentionMS         int64  `json:"retention_ms"`
	ContentDedup        bool   `json:"content_dedup"`
}

// ConfigChange sets the fields that are not nil.
type ConfigChange struct {
	MaxDeliveries       *uint64 `json:"max_deliveries,omitempty"`
	DeadLetterQueue     *string `json:"dead_letter_queue,omitempty"`
	MaxMessages         *int64  `json:"max_messages,omitempty"`
	MaxBytes            *int64  `json:"max_bytes,omitempty"`
	VisibilityTimeoutMS *int64  `json:"visibility_timeout_ms,omitempty"`
	DelayMS             *int64  `json:"delay_ms,omitempty"`
	ReceiveWaitMS       *int64  `json:"receive_wait_ms,omitempty"`
	MaxMessageSize      *int64  `json:"max_message_size,omitempty"`
	RetentionMS         *int64  `json:"retention_ms,omitempty"`
	ContentDedup        *bool   `json:"content_dedup,omitempty"`
}

// Ptr returns a pointer to v, for ConfigChange and LimitsChange.
func Ptr[T any](v T) *T { return &v }

// Configure sets the fields ch names (making the queue if need be) and
// returns the queue's whole config.
func (c *Client) Configure(ctx context.Context, queue string, ch ConfigChange) (QueueConfig, error) {
	b, h := jsonBody(ch)
	var out QueueConfig
	err := c.callJSON(ctx, call{method: http.MethodPut, path: queuePath(queue, "/config"), body: b, header: h, class: safe, endpoint: -1}, &out)
	return out, err
}

// QueueStats describe a queue.
type QueueStats struct {
	Queue            string      `json:"queue"`
	Depth            int         `json:"depth"`
	Leased           int         `json:"leased"`
	Delayed          int         `json:"delayed"`
	Bytes            int64       `json:"bytes"`
	Keys             int         `json:"keys"`
	OldestReadyAgeMS int64       `json:"oldest_ready_age_ms"`
	Config           QueueConfig `json:"config"`
	Totals           struct {
		Enqueued     uint64 `json:"enqueued"`
		Popped       uint64 `json:"popped"`
		Acked        uint64 `json:"acked"`
		DeadLettered uint64 `json:"dead_lettered"`
		Purged       uint64 `json:"purged"`
		Expired      uint64 `json:"expired"`
	} `json:"totals"`
	CreatedAt  time.Time `json:"created_at"`
	ModifiedAt time.Time `json:"modified_at"`
}

// Stats describes queue (ErrNotFound when it does not exist).
func (c *Client) Stats(ctx context.Context, queue string) (QueueStats, error) {
	var out QueueStats
	err := c.getJSON(ctx, queuePath(queue, "/stats"), nil, &out)
	return out, err
}

// Peeked is a ready message as Peek shows it.
type Peeked struct {
	ID          uint64
	Body        []byte
	ContentType string
	Group       string
	Attributes  map[string]Attribute
	Deliveries  uint64
	EnqueuedAt  time.Time
	Origin      *Origin // set on dead letters
}

// Peek returns up to max (1 to 1,000) ready messages, oldest first,
// taking none.
func (c *Client) Peek(ctx context.Context, queue string, max int) ([]Peeked, error) {
	var out struct {
		Messages []struct {
			batchMessage
			Deliveries uint64    `json:"deliveries"`
			EnqueuedAt time.Time `json:"enqueued_at"`
			Origin     *struct {
				Queue      string `json:"queue"`
				ID         uint64 `json:"id"`
				Deliveries uint64 `json:"deliveries"`
			} `json:"origin"`
		} `json:"messages"`
	}
	if err := c.getJSON(ctx, queuePath(queue, "/messages"), url.Values{"max": {strconv.Itoa(max)}}, &out); err != nil {
		return nil, err
	}
	ps := make([]Peeked, len(out.Messages))
	for i, p := range out.Messages {
		m, err := p.message()
		if err != nil {
			return nil, err
		}
		ps[i] = Peeked{ID: m.ID, Body: m.Body, ContentType: m.ContentType, Group: m.Group, Attributes: m.Attributes,
			Deliveries: p.Deliveries, EnqueuedAt: p.EnqueuedAt}
		if o := p.Origin; o != nil {
			ps[i].Origin = &Origin{Queue: o.Queue, ID: o.ID, Deliveries: o.Deliveries}
		}
	}
	return ps, nil
}

// Purge drops the queue's ready and delayed messages and returns how many.
// It is retried only when it was not applied.
func (c *Client) Purge(ctx context.Context, queue string) (int, error) {
	var out struct {
		Purged int `json:"purged"`
	}
	err := c.callJSON(ctx, call{method: http.MethodPost, path: queuePath(queue, "/purge"), class: notApplied, endpoint: -1}, &out)
	return out.Purged, err
}

// DeleteQueue removes the queue with its messages and config.
func (c *Client) DeleteQueue(ctx context.Context, queue string) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: queuePath(queue), class: safe, endpoint: -1})
	return ackedBefore(err) // a retry that finds it gone after a lost answer deleted it
}

// Limits are the cluster's limits (0: none), their usage, and the nodes
// whose disk alarm is raised.
type Limits struct {
	MaxQueues int64    `json:"max_queues"`
	MaxBytes  int64    `json:"max_bytes"`
	Queues    int      `json:"queues"`
	Bytes     int64    `json:"bytes"`
	Alarms    []uint64 `json:"alarms"`
}

// LimitsChange sets the limits that are not nil.
type LimitsChange struct {
	MaxQueues *int64 `json:"max_queues,omitempty"`
	MaxBytes  *int64 `json:"max_bytes,omitempty"`
}

// Limits returns the cluster's limits.
func (c *Client) Limits(ctx context.Context) (Limits, error) {
	var out Limits
	err := c.getJSON(ctx, "/mgmt/limits", nil, &out)
	return out, err
}

// SetLimits sets the limits ch names and returns them all.
func (c *Client) SetLimits(ctx context.Context, ch LimitsChange) (Limits, error) {
	b, h := jsonBody(ch)
	var out Limits
	err := c.callJSON(ctx, call{method: http.MethodPut, path: "/mgmt/limits", body: b, header: h, class: safe, endpoint: -1}, &out)
	return out, err
}

// Node is a cluster member.
type Node struct {
	ID       uint64   `json:"id"`
	PeerURLs []string `json:"peer_urls"`
	APIURL   string   `json:"api_url"`
	Learner  bool     `json:"learner"`
	IsLeader bool     `json:"is_leader"`
}

// Nodes lists the members and the leader's id (0 when none is known).
func (c *Client) Nodes(ctx context.Context) (nodes []Node, leader uint64, err error) {
	var out struct {
		Leader uint64 `json:"leader"`
		Nodes  []Node `json:"nodes"`
	}
	err = c.getJSON(ctx, "/mgmt/nodes", nil, &out)
	return out.Nodes, out.Leader, err
}

// AddNode adds a member (a learner when learner; promote it once caught
// up). Retried only when not applied.
func (c *Client) AddNode(ctx context.Context, id uint64, peerURL string, learner bool) (Node, error) {
	b, h := jsonBody(struct {
		ID      uint64 `json:"id"`
		PeerURL string `json:"peer_url"`
		Learner bool   `json:"learner"`
	}{id, peerURL, learner})
	var out Node
	err := c.callJSON(ctx, call{method: http.MethodPost, path: "/mgmt/nodes", body: b, header: h, class: notApplied, endpoint: -1}, &out)
	return out, err
}

// RemoveNode removes member id (its id is never used again).
func (c *Client) RemoveNode(ctx context.Context, id uint64) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: "/mgmt/nodes/" + strconv.FormatUint(id, 10), class: notApplied, endpoint: -1})
	return err
}

// PromoteNode makes learner id a voter.
func (c *Client) PromoteNode(ctx context.Context, id uint64) error {
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/mgmt/nodes/" + strconv.FormatUint(id, 10) + "/promote", class: notApplied, endpoint: -1})
	return err
}

// TransferLeader asks the leader to hand leadership to member id.
func (c *Client) TransferLeader(ctx context.Context, id uint64) error {
	b, h := jsonBody(struct {
		ID uint64 `json:"id"`
	}{id})
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/mgmt/leader", body: b, header: h, class: safe, endpoint: -1})
	return err
}

// Status is one node's view of itself.
type Status struct {
	Endpoint      string  `json:"endpoint"`
	ID            uint64  `json:"id"`
	Term          uint64  `json:"term"`
	Leader        uint64  `json:"leader"`
	Commit        uint64  `json:"commit"`
	Applied       uint64  `json:"applied"`
	SnapshotIndex uint64  `json:"snapshot_index"`
	WALBytes      int64   `json:"wal_bytes"`
	SnapshotBytes int64   `json:"snapshot_bytes"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Version       string  `json:"version"`
	Ready         bool    `json:"ready"`
	Error         string  `json:"error,omitempty"` // why the node could not be read
}

// Status asks every endpoint for its status and readiness, in order;
// a node that does not answer has Error set.
func (c *Client) Status(ctx context.Context) []Status {
	out := make([]Status, len(c.endpoints))
	for i, ep := range c.endpoints {
		s := &out[i]
		if err := c.callJSON(ctx, call{method: http.MethodGet, path: "/mgmt/status", class: safe, endpoint: i, once: true}, s); err != nil {
			s.Error = err.Error()
		}
		s.Endpoint = ep.String()
		_, err := c.do(ctx, call{method: http.MethodGet, path: "/readyz", endpoint: i, class: safe, once: true})
		s.Ready = err == nil
	}
	return out
}
