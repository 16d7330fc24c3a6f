package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftq/raftq/client"
)

func (a *app) putCmd() *cobra.Command {
	var key, group, contentType string
	var delay time.Duration
	var attrs []string
	cmd := &cobra.Command{
		Use:   "put QUEUE [BODY | @FILE | -]",
		Short: "enqueue a message (the body from the argument, a file, or stdin)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := a.body(args[1:])
			if err != nil {
				return err
			}
			opts := []client.SendOption{}
			if key != "" {
				opts = append(opts, client.WithKey(key))
			}
			if group != "" {
				opts = append(opts, client.WithGroup(group))
			}
			if contentType != "" {
				opts = append(opts, client.WithContentType(contentType))
			}
			if cmd.Flags().Changed("delay") {
				opts = append(opts, client.WithDelay(delay))
			}
			if len(attrs) > 0 {
				m, err := parseAttrs(attrs)
				if err != nil {
					return err
				}
				opts = append(opts, client.WithAttributes(m))
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			id, err := a.client.Enqueue(ctx, args[0], body, opts...)
			if err != nil {
				return err
			}
			return a.print(map[string]any{"queue": args[0], "id": id}, []string{"QUEUE", "ID"}, [][]string{{args[0], strconv.FormatUint(id, 10)}})
		},
	}
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "idempotency key (default: a random one, so retries store it once)")
	f.StringVar(&group, "group", "", "message group")
	f.StringVar(&contentType, "content-type", "", "content type")
	f.DurationVar(&delay, "delay", 0, "ready only after this long")
	f.StringArrayVar(&attrs, "attr", nil, "attribute NAME=VALUE (a String) or NAME:TYPE=VALUE; repeatable")
	return cmd
}

// parseAttrs reads NAME=VALUE and NAME:TYPE=VALUE attributes.
func parseAttrs(in []string) (map[string]client.Attribute, error) {
	out := map[string]client.Attribute{}
	for _, s := range in {
		nt, v, ok := strings.Cut(s, "=")
		if !ok || nt == "" {
			return nil, fmt.Errorf("--attr %q: NAME=VALUE or NAME:TYPE=VALUE", s)
		}
		name, typ, typed := strings.Cut(nt, ":")
		if !typed {
			typ = "String"
		}
		out[name] = client.Attribute{Type: typ, Value: v}
	}
	return out, nil
}

func (a *app) getCmd() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "get QUEUE",
		Short: "pop the oldest message for good (at most once) and write its body to stdout; nothing when the queue is empty",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			m, err := a.client.Dequeue(ctx, args[0], wait)
			if err != nil || m == nil {
				if err == nil && a.output == "json" {
					fmt.Fprintln(a.stdout, "null")
				}
				return err
			}
			if a.output == "json" {
				return a.print(messageOut(m, "", time.Time{}), nil, nil)
			}
			_, err = a.stdout.Write(m.Body)
			return err
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for a message")
	return cmd
}

func messageOut(m *client.Message, token string, expires time.Time) messageJSON {
	out := messageJSON{ID: m.ID, ContentType: m.ContentType, Group: m.Group, Deliveries: m.Deliveries, Token: token}
	out.Body, out.BodyB64 = bodyJSON(m.Body)
	if !m.Enqueued.IsZero() {
		out.Enqueued = &m.Enqueued
	}
	if !expires.IsZero() {
		out.Expires = &expires
	}
	for k, v := range m.Attributes {
		if out.Attributes == nil {
			out.Attributes = map[string]attrJSON{}
		}
		a := attrJSON{Type: v.Type, Value: v.Value}
		if strings.HasPrefix(v.Type, "Binary") {
			a.Value, a.BinaryValue = "", []byte(v.Value)
		}
		out.Attributes[k] = a
	}
	return out
}

func (a *app) leaseCmd() *cobra.Command {
	var ttl, wait time.Duration
	var max int
	cmd := &cobra.Command{
		Use:   "lease QUEUE",
		Short: "lease messages: invisible to others until acked, released, or the ttl passes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			ls, err := a.client.LeaseMany(ctx, args[0], max, client.LeaseOptions{TTL: ttl, Wait: wait})
			if err != nil {
				return err
			}
			out := []messageJSON{}
			var rows [][]string
			for _, l := range ls {
				out = append(out, messageOut(&l.Message, l.Token, l.Expires))
				rows = append(rows, []string{strconv.FormatUint(l.ID, 10), l.Token, when(l.Expires), strconv.FormatUint(l.Deliveries, 10), short(l.Body)})
			}
			return a.print(out, []string{"ID", "TOKEN", "EXPIRES", "DELIVERIES", "BODY"}, rows)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&ttl, "ttl", 0, "lease ttl (default: the queue's visibility timeout, else 30s)")
	f.DurationVar(&wait, "wait", 0, "wait this long for a message")
	f.IntVar(&max, "max", 1, "lease up to this many (1 to 1000)")
	return cmd
}

// leaseArgs reads QUEUE ID TOKEN.
func leaseArgs(args []string) (*client.Lease, error) {
	id, err := strconv.ParseUint(args[1], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("message id %q is not a number", args[1])
	}
	return &client.Lease{Message: client.Message{ID: id}, Queue: args[0], Token: args[2]}, nil
}

func (a *app) settleCmd(use, short string, run func(ctx context.Context, l *client.Lease) (map[string]any, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use + " QUEUE ID TOKEN",
		Short: short,
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := leaseArgs(args)
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			out, err := run(ctx, l)
			if err != nil {
				return err
			}
			out["queue"], out["id"] = l.Queue, l.ID
			row := []string{l.Queue, args[1], use + "ed"}
			if e, ok := out["lease_expires"].(time.Time); ok {
				row[2] = "expires " + when(e)
			}
			return a.print(out, []string{"QUEUE", "ID", "DONE"}, [][]string{row})
		},
	}
}

func (a *app) ackCmd() *cobra.Command {
	return a.settleCmd("ack", "remove a leased message for good", func(ctx context.Context, l *client.Lease) (map[string]any, error) {
		return map[string]any{"acked": true}, a.client.Ack(ctx, l)
	})
}

func (a *app) releaseCmd() *cobra.Command {
	var delay time.Duration
	cmd := a.settleCmd("release", "give a leased message back (ready again at its place, after --delay)", func(ctx context.Context, l *client.Lease) (map[string]any, error) {
		return map[string]any{"released": true}, a.client.Release(ctx, l, delay)
	})
	cmd.Flags().DurationVar(&delay, "delay", 0, "ready again only after this long")
	return cmd
}

func (a *app) extendCmd() *cobra.Command {
	var ttl time.Duration
	cmd := a.settleCmd("extend", "move a lease's expiry to now + --ttl", func(ctx context.Context, l *client.Lease) (map[string]any, error) {
		exp, err := a.client.Extend(ctx, l, ttl)
		return map[string]any{"lease_expires": exp}, err
	})
	cmd.Flags().DurationVar(&ttl, "ttl", 30*time.Second, "the lease's new ttl from now")
	return cmd
}

func (a *app) peekCmd() *cobra.Command {
	var max int
	cmd := &cobra.Command{
		Use:   "peek QUEUE",
		Short: "show the oldest ready messages, taking none",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			ps, err := a.client.Peek(ctx, args[0], max)
			if err != nil {
				return err
			}
			out := []messageJSON{}
			var rows [][]string
			for _, p := range ps {
				m := client.Message{ID: p.ID, Body: p.Body, ContentType: p.ContentType, Deliveries: p.Deliveries, Enqueued: p.EnqueuedAt}
				out = append(out, messageOut(&m, "", time.Time{}))
				rows = append(rows, []string{strconv.FormatUint(p.ID, 10), strconv.FormatUint(p.Deliveries, 10), when(p.EnqueuedAt), p.ContentType, short(p.Body)})
			}
			return a.print(out, []string{"ID", "DELIVERIES", "ENQUEUED", "CONTENT-TYPE", "BODY"}, rows)
		},
	}
	cmd.Flags().IntVar(&max, "max", 10, "at most this many (1 to 1000)")
	return cmd
}

func (a *app) purgeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "purge QUEUE",
		Short: "drop a queue's ready and delayed messages (leased ones stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			n, err := a.client.Purge(ctx, args[0])
			if err != nil {
				return err
			}
			return a.print(map[string]any{"queue": args[0], "purged": n}, []string{"QUEUE", "PURGED"}, [][]string{{args[0], strconv.Itoa(n)}})
		},
	}
}

func (a *app) consumeCmd() *cobra.Command {
	var execCmd string
	var concurrency, count int
	var ttl, wait time.Duration
	cmd := &cobra.Command{
		Use:   "consume QUEUE",
		Short: "lease messages one after another: print each (or run --exec with it) and ack it; stop on Ctrl-C",
		Long: "consume leases messages and handles each: without --exec it prints the body on a line of its own and acks it; " +
			"with --exec CMD it runs CMD through sh -c with the body on stdin and RAFTQ_QUEUE, RAFTQ_MESSAGE_ID, RAFTQ_DELIVERIES " +
			"in the environment, acks the message when CMD exits 0 and releases it (delivered again after a backoff) otherwise. " +
			"Leases are extended while CMD runs. Ctrl-C stops leasing; running commands finish.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			var handled atomicCount
			h := func(hctx context.Context, l *client.Lease) error {
				if execCmd == "" {
					a.printConsumed(l)
				} else if err := a.runFor(hctx, execCmd, l); err != nil {
					fmt.Fprintf(a.stderr, "raftqctl: message %d: %v; released\n", l.ID, err)
					return err
				}
				if handled.add() == count {
					stop()
				}
				return nil
			}
			if count > 0 {
				concurrency = 1 // so that exactly count are handled
			}
			return a.client.Consume(ctx, args[0], h, client.ConsumeOptions{Concurrency: concurrency, TTL: ttl, Wait: wait,
				OnError: func(err error) { fmt.Fprintln(a.stderr, "raftqctl:", err) }})
		},
	}
	f := cmd.Flags()
	f.StringVar(&execCmd, "exec", "", "run this shell command per message (body on stdin); ack on exit 0")
	f.IntVar(&concurrency, "concurrency", 1, "messages handled at once")
	f.IntVar(&count, "count", 0, "stop after this many messages (0: never); handles one at a time, whatever --concurrency")
	f.DurationVar(&ttl, "ttl", 30*time.Second, "lease ttl (extended while a message is handled)")
	f.DurationVar(&wait, "wait", 20*time.Second, "long-poll wait")
	return cmd
}

func (a *app) printConsumed(l *client.Lease) {
	if a.output == "json" { // one JSON object per line
		b, _ := json.Marshal(messageOut(&l.Message, l.Token, l.Expires))
		fmt.Fprintf(a.stdout, "%s\n", b)
		return
	}
	fmt.Fprintf(a.stdout, "%s\n", l.Body)
}

// runFor runs the --exec command for l, for --timeout at most.
func (a *app) runFor(ctx context.Context, command string, l *client.Lease) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	c := exec.CommandContext(ctx, "sh", "-c", command)
	c.Stdin, c.Stdout, c.Stderr = bytes.NewReader(l.Body), a.stdout, a.stderr
	c.Env = append(os.Environ(), "RAFTQ_QUEUE="+l.Queue, "RAFTQ_MESSAGE_ID="+strconv.FormatUint(l.ID, 10),
		"RAFTQ_DELIVERIES="+strconv.FormatUint(l.Deliveries, 10))
	return c.Run()
}

type atomicCount struct{ n atomic.Int64 }

func (c *atomicCount) add() int { return int(c.n.Add(1)) }
