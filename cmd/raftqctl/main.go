// Command raftqctl is raftq's command-line client: queues, messages,
// leases, limits and membership from a shell, as etcdctl is etcd's.
//
//	raftqctl put jobs 'resize img-42.png'
//	raftqctl lease jobs --ttl 30s
//	raftqctl consume jobs --exec './process.sh'
//	raftqctl status
//
// Global flags as etcdctl has them: --endpoints (RAFTQ_ENDPOINTS),
// --cacert, --cert, --key, --token (RAFTQ_TOKEN), -o table|json,
// --timeout. A failure prints one line to stderr and exits 1.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftq/raftq/client"
)

// defaultEndpoints are the Procfile cluster's client APIs.
const defaultEndpoints = "http://127.0.0.1:12380,http://127.0.0.1:22380,http://127.0.0.1:32380"

// app is one run of raftqctl: its global flags, streams and client.
type app struct {
	endpoints, cacert, cert, key, token, output string
	timeout                                     time.Duration
	stdin                                       io.Reader
	stdout, stderr                              io.Writer
	client                                      *client.Client
}

func main() {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.root().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(a.stderr, "raftqctl:", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "raftqctl",
		Short:         "raftq's command-line client",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "table" && a.output != "json" {
				return fmt.Errorf("-o %q: table or json", a.output)
			}
			var opts []client.Option
			if a.token != "" {
				opts = append(opts, client.WithToken(a.token))
			}
			if a.cacert != "" || a.cert != "" || a.key != "" {
				opts = append(opts, client.WithTLS(a.cacert, a.cert, a.key))
			}
			var err error
			a.client, err = client.New(strings.Split(a.endpoints, ","), opts...)
			return err
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.endpoints, "endpoints", envOr("RAFTQ_ENDPOINTS", defaultEndpoints), "the nodes' client API URLs, comma-separated (env RAFTQ_ENDPOINTS)")
	f.StringVar(&a.cacert, "cacert", "", "verify the nodes' TLS certificates with this CA bundle")
	f.StringVar(&a.cert, "cert", "", "the client's TLS certificate")
	f.StringVar(&a.key, "key", "", "the client's TLS key")
	f.StringVar(&a.token, "token", os.Getenv("RAFTQ_TOKEN"), "bearer token (env RAFTQ_TOKEN)")
	f.StringVarP(&a.output, "output", "o", "table", "output: table (for people) or json (for scripts)")
	f.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long a command may take in all, retries and waits included (consume: each message's handling)")
	root.AddCommand(a.putCmd(), a.getCmd(), a.leaseCmd(), a.ackCmd(), a.releaseCmd(), a.extendCmd(), a.peekCmd(),
		a.purgeCmd(), a.queuesCmd(), a.queueCmd(), a.nodesCmd(), a.leaderCmd(), a.statusCmd(), a.limitsCmd(), a.consumeCmd())
	return root
}

// ctx bounds one command by --timeout.
func (a *app) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), a.timeout)
}

// body reads a message body: the argument itself, @file, or stdin for
// "-" or no argument.
func (a *app) body(args []string) ([]byte, error) {
	if len(args) == 0 || args[0] == "-" {
		return io.ReadAll(a.stdin)
	}
	if name, ok := strings.CutPrefix(args[0], "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading the body: %w", err)
		}
		return b, nil
	}
	return []byte(args[0]), nil
}
