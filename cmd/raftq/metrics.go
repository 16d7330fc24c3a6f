package main

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/queuefsm"
)

// maxQueueSeries bounds the per-queue series: the deepest queues get
// their own (queue label); every queue counts in the cluster's totals.
const maxQueueSeries = 100

// promMetrics are this node's Prometheus metrics. Request and refusal counts
// are kept as they happen; raft and queue figures are read at each scrape
// (stateCollector), so they cost nothing between scrapes. etcd's wal,
// snap and rafthttp packages register their own metrics (WAL fsync
// durations among them) in the default registry: /metrics serves both.
type promMetrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	refusals    *prometheus.CounterVec
	redelivered prometheus.Counter
}

func newMetrics(svc *service) *promMetrics {
	m := &promMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "raftq_http_requests_total",
			Help: "Client API requests answered, by route template, method and status code."}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "raftq_http_request_duration_seconds",
			Help:    "Client API request latency, by route template and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"route", "method"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "raftq_refusals_total",
			Help: "Writes this node refused for a limit: max_messages, max_bytes, max_queues (scope queue or cluster), disk_alarm, backpressure, max_waiters."},
			[]string{"limit", "scope"}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "raftq_redeliveries_total",
			Help: "Leases this node handed out of messages delivered before."}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.refusals, m.redelivered, &stateCollector{svc: svc})
	return m
}

// Request implements httpapi.Metrics.
func (m *promMetrics) Request(route, method string, status int, took time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method).Observe(took.Seconds())
}

// Refused implements httpapi.Metrics.
func (m *promMetrics) Refused(limit, scope string) { m.refusals.WithLabelValues(limit, scope).Inc() }

// handler serves raftq's metrics and the default registry's (Go runtime,
// process, etcd's wal, snap and rafthttp).
func (m *promMetrics) handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{prometheus.DefaultGatherer, m.reg}, promhttp.HandlerOpts{})
}

var (
	descTerm        = desc("raftq_raft_term", "The latest persisted raft term.")
	descIsLeader    = desc("raftq_raft_is_leader", "1 if this node leads, else 0.")
	descHasLeader   = desc("raftq_raft_has_leader", "1 if this node knows a leader, else 0.")
	descLeaderChg   = desc("raftq_raft_leader_changes_total", "Changes of leader this node saw.")
	descCommit      = desc("raftq_raft_commit_index", "The commit index last persisted.")
	descApplied     = desc("raftq_raft_applied_index", "The index applied to the state machine.")
	descLag         = desc("raftq_raft_apply_lag_entries", "Commit index minus applied index.")
	descSnapIndex   = desc("raftq_raft_snapshot_index", "The index of the newest snapshot.")
	descCommitted   = desc("raftq_raft_proposals_committed_total", "Proposals from this node's clients applied.")
	descFailed      = desc("raftq_raft_proposals_failed_total", "Proposals from this node's clients that failed (refused, timed out, lost).")
	descPending     = desc("raftq_raft_proposals_pending", "Proposals from this node's clients waiting now.")
	descSnapshots   = desc("raftq_raft_snapshots_total", "Snapshots this node saved.")
	descSnapSeconds = desc("raftq_raft_snapshot_duration_seconds_total", "Time the saved snapshots took, in the background, in all.")
	descReadys      = desc("raftq_raft_readys_total", "Ready batches handled.")
	descMsgsSent    = desc("raftq_raft_messages_sent_total", "Raft messages sent to peers.")
	descGroups      = desc("raftq_raft_groups_total", "Entries proposed for this node's clients (groups).")
	descGrouped     = desc("raftq_raft_grouped_commands_total", "Commands those entries carried.")
	descReadRounds  = desc("raftq_raft_read_rounds_total", "ReadIndex rounds answered (each serves many reads).")
	descQueues      = desc("raftq_queues", "Queues in the cluster.")
	descBytes       = desc("raftq_bytes", "Bytes the cluster's state counts against max_bytes.")
	descMaxQueues   = desc("raftq_limit_max_queues", "The cluster's max_queues (0: none).")
	descMaxBytes    = desc("raftq_limit_max_bytes", "The cluster's max_bytes (0: none).")
	descAlarm       = prometheus.NewDesc("raftq_disk_alarm", "1 for each node whose disk space alarm is raised.", []string{"node"}, nil)
	queueLabels     = []string{"queue"}
	descDepth       = prometheus.NewDesc("raftq_queue_depth", "Ready messages (deepest queues only, see README).", queueLabels, nil)
	descLeased      = prometheus.NewDesc("raftq_queue_leased", "Leased messages.", queueLabels, nil)
	descDelayed     = prometheus.NewDesc("raftq_queue_delayed", "Delayed messages.", queueLabels, nil)
	descQBytes      = prometheus.NewDesc("raftq_queue_bytes", "Bytes the queue counts against limits.", queueLabels, nil)
	descEnqueued    = prometheus.NewDesc("raftq_queue_enqueued_total", "Messages stored since the queue was made.", queueLabels, nil)
	descDequeued    = prometheus.NewDesc("raftq_queue_dequeued_total", "Messages taken for good by a pop.", queueLabels, nil)
	descAcked       = prometheus.NewDesc("raftq_queue_acked_total", "Messages acked.", queueLabels, nil)
	descDead        = prometheus.NewDesc("raftq_queue_dead_lettered_total", "Messages moved to the dead-letter queue or dropped.", queueLabels, nil)
)

func desc(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }

// stateCollector reads the node and the state machine at each scrape.
type stateCollector struct{ svc *service }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTerm, descIsLeader, descHasLeader, descLeaderChg, descCommit, descApplied, descLag,
		descSnapIndex, descCommitted, descFailed, descPending, descSnapshots, descSnapSeconds, descReadys, descMsgsSent,
		descGroups, descGrouped, descReadRounds, descQueues, descBytes, descMaxQueues, descMaxBytes, descAlarm,
		descDepth, descLeased, descDelayed, descQBytes, descEnqueued, descDequeued, descAcked, descDead} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.svc.node
	st, cs := n.Status(), n.Counters()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descTerm, float64(st.Term))
	gauge(descIsLeader, b2f(st.Leader == n.ID()))
	gauge(descHasLeader, b2f(st.Leader != 0))
	counter(descLeaderChg, float64(cs.LeaderChanges))
	gauge(descCommit, float64(st.Commit))
	gauge(descApplied, float64(st.Applied))
	gauge(descLag, float64(max(st.Commit, st.Applied)-st.Applied))
	gauge(descSnapIndex, float64(st.SnapshotIndex))
	counter(descCommitted, float64(cs.ProposalsApplied))
	counter(descFailed, float64(cs.ProposalsFailed))
	gauge(descPending, float64(cs.ProposalsPending))
	counter(descSnapshots, float64(cs.Snapshots))
	counter(descSnapSeconds, cs.SnapshotSeconds)
	counter(descReadys, float64(cs.Readys))
	counter(descMsgsSent, float64(cs.MessagesSent))
	counter(descGroups, float64(cs.Groups))
	counter(descGrouped, float64(cs.GroupedCommands))
	counter(descReadRounds, float64(cs.ReadRounds))

	var lim queuefsm.ClusterLimits
	n.View(func() { lim = c.svc.fsm.Limits() })
	top := deepest(n.View, c.svc.fsm.FSM, maxQueueSeries)
	gauge(descQueues, float64(lim.Queues))
	gauge(descBytes, float64(lim.Bytes))
	gauge(descMaxQueues, float64(lim.MaxQueues))
	gauge(descMaxBytes, float64(lim.MaxBytes))
	for _, id := range lim.Alarms {
		gauge(descAlarm, 1, strconv.FormatUint(id, 10))
	}
	for _, q := range top {
		gauge(descDepth, float64(q.Depth), q.Name)
		gauge(descLeased, float64(q.Leased), q.Name)
		gauge(descDelayed, float64(q.Delayed), q.Name)
		gauge(descQBytes, float64(q.Bytes), q.Name)
		counter(descEnqueued, float64(q.Totals.Enqueued), q.Name)
		counter(descDequeued, float64(q.Totals.Popped), q.Name)
		counter(descAcked, float64(q.Totals.Acked), q.Name)
		counter(descDead, float64(q.Totals.DeadLettered), q.Name)
	}
}

// deepest returns the counts of the n queues holding most messages
// (ready, leased and delayed), ties by name. Called under the node's read
// lock, which applying waits for: it copies the counts, O(1) per queue,
// and sorts outside.
func deepest(view func(func()), f *queuefsm.FSM, n int) []queuefsm.QueueCounts {
	var qs []queuefsm.QueueCounts
	view(func() { qs = f.Counts() })
	slices.SortFunc(qs, func(a, b queuefsm.QueueCounts) int {
		if d := (b.Depth + b.Leased + b.Delayed) - (a.Depth + a.Leased + a.Delayed); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	return qs[:min(n, len(qs))]
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// buildVersion, when set at build time (go build -ldflags "-X
// main.buildVersion=v1.2.3"), is the version /mgmt/status reports.
var buildVersion string

// version is buildVersion, or the module version and VCS revision the
// binary was built from, as Go records them.
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "+dirty"
		}
	}
	return v
}

// Ready implements httpapi.Operations: a leader is known and everything
// this node heard committed is applied. The error is the reason /readyz
// gives.
func (s *service) Ready() error {
	st := s.node.Status()
	switch {
	case st.Leader == 0:
		return errors.New("no leader known")
	case st.Applied < st.Commit:
		return fmt.Errorf("applying: %d committed entries not yet applied", st.Commit-st.Applied)
	}
	return nil
}

// Status implements httpapi.Operations.
func (s *service) Status() (httpapi.NodeStatus, error) {
	st := s.node.Status()
	walBytes, snapBytes, err := s.store.DiskUsage()
	if err != nil {
		return httpapi.NodeStatus{}, err
	}
	return httpapi.NodeStatus{ID: s.node.ID(), Term: st.Term, Leader: st.Leader, Commit: st.Commit, Applied: st.Applied,
		SnapshotIndex: st.SnapshotIndex, WALBytes: walBytes, SnapshotBytes: snapBytes,
		UptimeSeconds: time.Since(s.started).Seconds(), Version: version()}, nil
}

// Metrics implements httpapi.Operations.
func (s *service) Metrics() http.Handler { return s.metrics.handler() }
