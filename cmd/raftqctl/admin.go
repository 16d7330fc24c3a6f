package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftq/raftq/client"
)

func (a *app) queuesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "queues",
		Short: "list the queues with their counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			qs, err := a.client.Queues(ctx)
			if err != nil {
				return err
			}
			if qs == nil {
				qs = []client.QueueInfo{}
			}
			var rows [][]string
			for _, q := range qs {
				rows = append(rows, []string{q.Name, strconv.Itoa(q.Depth), strconv.Itoa(q.Leased), strconv.Itoa(q.Delayed)})
			}
			return a.print(qs, []string{"QUEUE", "READY", "LEASED", "DELAYED"}, rows)
		},
	}
}

func (a *app) queueCmd() *cobra.Command {
	q := &cobra.Command{Use: "queue", Short: "a queue's config, stats and deletion"}
	q.AddCommand(a.queueConfigCmd(), a.queueStatsCmd(), &cobra.Command{
		Use:   "delete QUEUE",
		Short: "remove a queue with its messages, keys and config",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			if err := a.client.DeleteQueue(ctx, args[0]); err != nil {
				return err
			}
			return a.print(map[string]any{"queue": args[0], "deleted": true}, []string{"QUEUE", "DELETED"}, [][]string{{args[0], "yes"}})
		},
	})
	return q
}

func (a *app) queueStatsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stats QUEUE",
		Short: "a queue's counts, bytes, config and totals",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			st, err := a.client.Stats(ctx, args[0])
			if err != nil {
				return err
			}
			t := st.Totals
			return a.print(st, []string{"QUEUE", "READY", "LEASED", "DELAYED", "BYTES", "OLDEST", "ENQUEUED", "ACKED", "POPPED", "DEAD-LETTERED"},
				[][]string{{st.Queue, strconv.Itoa(st.Depth), strconv.Itoa(st.Leased), strconv.Itoa(st.Delayed), strconv.FormatInt(st.Bytes, 10),
					(time.Duration(st.OldestReadyAgeMS) * time.Millisecond).String(), strconv.FormatUint(t.Enqueued, 10),
					strconv.FormatUint(t.Acked, 10), strconv.FormatUint(t.Popped, 10), strconv.FormatUint(t.DeadLettered, 10)}})
		},
	}
}

func (a *app) queueConfigCmd() *cobra.Command {
	var ch client.ConfigChange
	var maxDeliveries uint64
	var dlq string
	var maxMessages, maxBytes, maxMessageSize int64
	var visibility, delay, wait, retention time.Duration
	var dedup bool
	cmd := &cobra.Command{
		Use:   "config QUEUE",
		Short: "show a queue's config, or set the fields given",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			set := func(name string, apply func()) {
				if f.Changed(name) {
					apply()
				}
			}
			ms := func(d time.Duration) *int64 { return client.Ptr(d.Milliseconds()) }
			set("max-deliveries", func() { ch.MaxDeliveries = &maxDeliveries })
			set("dead-letter-queue", func() { ch.DeadLetterQueue = &dlq })
			set("max-messages", func() { ch.MaxMessages = &maxMessages })
			set("max-bytes", func() { ch.MaxBytes = &maxBytes })
			set("max-message-size", func() { ch.MaxMessageSize = &maxMessageSize })
			set("visibility-timeout", func() { ch.VisibilityTimeoutMS = ms(visibility) })
			set("delay", func() { ch.DelayMS = ms(delay) })
			set("receive-wait", func() { ch.ReceiveWaitMS = ms(wait) })
			set("retention", func() { ch.RetentionMS = ms(retention) })
			set("content-dedup", func() { ch.ContentDedup = &dedup })
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var cfg client.QueueConfig
			var err error
			if ch == (client.ConfigChange{}) {
				var st client.QueueStats
				st, err = a.client.Stats(ctx, args[0])
				cfg = st.Config
			} else {
				cfg, err = a.client.Configure(ctx, args[0], ch)
			}
			if err != nil {
				return err
			}
			d := func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }
			return a.print(cfg, []string{"MAX-DELIVERIES", "DEAD-LETTER-QUEUE", "MAX-MESSAGES", "MAX-BYTES", "VISIBILITY", "DELAY", "RECEIVE-WAIT", "MAX-MESSAGE-SIZE", "RETENTION"},
				[][]string{{strconv.FormatUint(cfg.MaxDeliveries, 10), orDash(cfg.DeadLetterQueue), strconv.FormatInt(cfg.MaxMessages, 10),
					strconv.FormatInt(cfg.MaxBytes, 10), d(cfg.VisibilityTimeoutMS), d(cfg.DelayMS), d(cfg.ReceiveWaitMS),
					strconv.FormatInt(cfg.MaxMessageSize, 10), d(cfg.RetentionMS)}})
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&maxDeliveries, "max-deliveries", 0, "dead-letter a message leased this often (0: never)")
	f.StringVar(&dlq, "dead-letter-queue", "", "where dead letters go (\"\": dropped)")
	f.Int64Var(&maxMessages, "max-messages", 0, "the queue's message limit (0: none)")
	f.Int64Var(&maxBytes, "max-bytes", 0, "the queue's byte limit (0: none)")
	f.Int64Var(&maxMessageSize, "max-message-size", 0, "the largest message, body and attributes (0: none)")
	f.DurationVar(&visibility, "visibility-timeout", 0, "the lease ttl of a lease that names none (0: 30s)")
	f.DurationVar(&delay, "delay", 0, "the delay of an enqueue that names none")
	f.DurationVar(&wait, "receive-wait", 0, "the long-poll wait of a take that names none")
	f.DurationVar(&retention, "retention", 0, "drop messages stored longer (0: keep)")
	f.BoolVar(&dedup, "content-dedup", false, "SQS ContentBasedDeduplication")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) nodesCmd() *cobra.Command {
	n := &cobra.Command{Use: "nodes", Short: "the cluster's members"}
	var learner bool
	add := &cobra.Command{
		Use:   "add ID PEER_URL",
		Short: "add a member (then start it with --join)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := nodeID(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			node, err := a.client.AddNode(ctx, id, args[1], learner)
			if err != nil {
				return err
			}
			return a.print(node, []string{"ID", "PEER", "LEARNER"}, [][]string{{args[0], args[1], strconv.FormatBool(node.Learner)}})
		},
	}
	add.Flags().BoolVar(&learner, "learner", false, "add it as a learner (promote it once it has caught up)")
	n.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "list the members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			nodes, leader, err := a.client.Nodes(ctx)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, m := range nodes {
				role := "follower"
				switch {
				case m.ID == leader:
					role = "leader"
				case m.Learner:
					role = "learner"
				}
				rows = append(rows, []string{strconv.FormatUint(m.ID, 10), role, strings.Join(m.PeerURLs, ","), orDash(m.APIURL)})
			}
			return a.print(map[string]any{"leader": leader, "nodes": nodes}, []string{"ID", "ROLE", "PEER", "API"}, rows)
		},
	}, add, a.nodeChangeCmd("remove", "remove a member (its id is never used again)", "removed", (*client.Client).RemoveNode),
		a.nodeChangeCmd("promote", "make a learner a voter", "promoted", (*client.Client).PromoteNode))
	return n
}

func nodeID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("node id %q is not a positive number", s)
	}
	return id, nil
}

// nodeChangeCmd is a command that changes member ID and says done.
func (a *app) nodeChangeCmd(use, short, done string, change func(*client.Client, context.Context, uint64) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := nodeID(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			if err := change(a.client, ctx, id); err != nil {
				return err
			}
			return a.print(map[string]any{"id": id, done: true}, []string{"ID", "DONE"}, [][]string{{args[0], done}})
		},
	}
}

func (a *app) leaderCmd() *cobra.Command {
	l := &cobra.Command{Use: "leader", Short: "leadership"}
	l.AddCommand(a.nodeChangeCmd("transfer", "hand leadership to member ID", "leader", (*client.Client).TransferLeader))
	return l
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "each endpoint's view: id, leader, term, indexes, readiness",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			st := a.client.Status(ctx)
			var rows [][]string
			down := 0
			for _, s := range st {
				if s.Error != "" {
					down++
					rows = append(rows, []string{s.Endpoint, "-", "-", "-", "-", "-", "no", s.Error})
					continue
				}
				rows = append(rows, []string{s.Endpoint, strconv.FormatUint(s.ID, 10), strconv.FormatUint(s.Leader, 10), strconv.FormatUint(s.Term, 10),
					strconv.FormatUint(s.Commit, 10), strconv.FormatUint(s.Applied, 10), yesNo(s.Ready), ""})
			}
			if err := a.print(st, []string{"ENDPOINT", "ID", "LEADER", "TERM", "COMMIT", "APPLIED", "READY", "ERROR"}, rows); err != nil {
				return err
			}
			if down == len(st) {
				return fmt.Errorf("no endpoint answered")
			}
			return nil
		},
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (a *app) limitsCmd() *cobra.Command {
	l := &cobra.Command{Use: "limits", Short: "the cluster's limits"}
	show := func(lim client.Limits) error {
		alarms := "-"
		if len(lim.Alarms) > 0 {
			alarms = fmt.Sprint(lim.Alarms)
		}
		return a.print(lim, []string{"MAX-QUEUES", "QUEUES", "MAX-BYTES", "BYTES", "ALARMS"},
			[][]string{{strconv.FormatInt(lim.MaxQueues, 10), strconv.Itoa(lim.Queues), strconv.FormatInt(lim.MaxBytes, 10), strconv.FormatInt(lim.Bytes, 10), alarms}})
	}
	var maxQueues, maxBytes int64
	set := &cobra.Command{
		Use:   "set",
		Short: "set --max-queues and/or --max-bytes (0: none)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ch client.LimitsChange
			if cmd.Flags().Changed("max-queues") {
				ch.MaxQueues = &maxQueues
			}
			if cmd.Flags().Changed("max-bytes") {
				ch.MaxBytes = &maxBytes
			}
			if ch == (client.LimitsChange{}) {
				return fmt.Errorf("limits set: give --max-queues or --max-bytes")
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			lim, err := a.client.SetLimits(ctx, ch)
			if err != nil {
				return err
			}
			return show(lim)
		},
	}
	set.Flags().Int64Var(&maxQueues, "max-queues", 0, "the most queues")
	set.Flags().Int64Var(&maxBytes, "max-bytes", 0, "the most bytes all queues hold")
	l.AddCommand(&cobra.Command{
		Use:   "get",
		Short: "the limits, their usage and raised disk alarms",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			lim, err := a.client.Limits(ctx)
			if err != nil {
				return err
			}
			return show(lim)
		},
	}, set)
	return l
}
