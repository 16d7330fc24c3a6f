// Command raftq runs one node of a raftq cluster: a replicated FIFO message
// queue served over HTTP. With no flags it is a single-node queue on
// 127.0.0.1:12380 keeping its data in ./raftq-1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/raftq/raftq/httpapi"
	"github.com/raftq/raftq/raftnode"
	"github.com/raftq/raftq/sqsapi"
	"github.com/raftq/raftq/ui"
	"github.com/raftq/raftq/wal"
)

// config is everything the flags say.
type config struct {
	raft           raftnode.Config
	cluster        string
	apiAddr        string
	listenPeer     string
	dataDir        string
	maxMessage     int64
	requestTimeout time.Duration
	maxWaiters     int
	maxClientConns int
	minFreeBytes   uint64
	logLevel       string
	logFormat      string
	pprofAddr      string
	authTokenFile  string
	metricsAuth    bool
	clientTLS      transport.TLSInfo // the API's (empty: plain HTTP)
	sqsAddr        string
	sqsAdvertise   string
	sqsAccount     string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("raftq", flag.ContinueOnError)
	fs.Uint64Var(&c.raft.ID, "id", 1, "node id, 1-based; never reused")
	fs.StringVar(&c.cluster, "cluster", "http://127.0.0.1:12379", "peer URLs of the initial members in id order, comma-separated")
	fs.StringVar(&c.apiAddr, "api-addr", "127.0.0.1:12380", "client API listen address HOST:PORT")
	fs.StringVar(&c.raft.APIURL, "advertise-api", "", "client API URL other nodes list for this one (default http://<api-addr>)")
	fs.StringVar(&c.listenPeer, "listen-peer", "", "peer listen address HOST:PORT (default: the host:port of this node's URL in --cluster)")
	fs.StringVar(&c.raft.PeerLocalAddr, "peer-local-addr", "", "local IP address to make outgoing peer connections from (default: any)")
	fs.StringVar(&c.dataDir, "data-dir", "", "directory for the WAL and snapshots (default raftq-<id>)")
	fs.BoolVar(&c.raft.Join, "join", false, "join an existing cluster as a new member instead of bootstrapping one")
	fs.StringVar(&c.raft.ClusterToken, "cluster-token", raftnode.DefaultClusterToken, "names a new cluster, with --cluster: its id is derived from both, and peers of other clusters are refused (used only on an empty data dir; give every node of a cluster the same)")
	fs.Uint64Var(&c.raft.SnapshotCount, "snapshot-count", raftnode.DefaultSnapshotCount, "applied entries between snapshots")
	fs.Uint64Var(&c.raft.SnapshotBytes, "snapshot-bytes", raftnode.DefaultSnapshotBytes, "bytes of applied entries that trigger a snapshot before --snapshot-count entries (0: count only)")
	fs.Int64Var(&c.maxMessage, "max-message-bytes", httpapi.DefaultMaxMessageBytes, "largest message body accepted (413 above)")
	fs.IntVar(&c.maxWaiters, "max-waiters", httpapi.DefaultMaxWaiters, "long polls waiting at once on this node; more answer 429 at once")
	fs.IntVar(&c.maxClientConns, "max-client-conns", DefaultMaxClientConns, "open client API connections at once; more wait in the listen backlog until one closes")
	fs.Uint64Var(&c.minFreeBytes, "min-free-bytes", DefaultMinFreeBytes, "raise the replicated disk space alarm (enqueues refused cluster-wide, 507) when the data dir's filesystem has less free; it clears at 1.25 times this (0: never raise, and clear this node's alarm)")
	fs.DurationVar(&c.requestTimeout, "request-timeout", httpapi.DefaultRequestTimeout, "deadline for each replicated operation (503 after)")
	fs.DurationVar(&c.raft.TickInterval, "tick", raftnode.DefaultTickInterval, "raft tick (heartbeat interval)")
	fs.IntVar(&c.raft.ElectionTicks, "election-ticks", raftnode.DefaultElectionTicks, "ticks without a leader before an election")
	fs.IntVar(&c.raft.MaxGroupsInFlight, "max-groups-in-flight", raftnode.DefaultMaxGroupsInFlight, "groups of proposals this node may have on their way at once (proposals arriving meanwhile are gathered into the next)")
	fs.StringVar(&c.clientTLS.CertFile, "cert-file", "", "the client API's TLS certificate (with --key-file: the API serves https)")
	fs.StringVar(&c.clientTLS.KeyFile, "key-file", "", "the key of --cert-file")
	fs.BoolVar(&c.clientTLS.ClientCertAuth, "client-cert-auth", false, "clients must present a certificate --trusted-ca-file signed")
	fs.StringVar(&c.clientTLS.TrustedCAFile, "trusted-ca-file", "", "the CA of client certificates (and of the other nodes' API certificates, for requests forwarded to the leader)")
	fs.StringVar(&c.raft.PeerTLS.CertFile, "peer-cert-file", "", "this node's peer certificate (peer mutual TLS: with --peer-key-file and --peer-trusted-ca-file; --cluster URLs are then https://)")
	fs.StringVar(&c.raft.PeerTLS.KeyFile, "peer-key-file", "", "the key of --peer-cert-file")
	fs.StringVar(&c.raft.PeerTLS.TrustedCAFile, "peer-trusted-ca-file", "", "the CA that signs every peer's certificate; a peer without one it signed is refused")
	fs.StringVar(&c.sqsAddr, "sqs-addr", "", "serve an Amazon SQS-compatible endpoint (AWS JSON protocol) on HOST:PORT (off when empty)")
	fs.StringVar(&c.sqsAdvertise, "advertise-sqs", "", "the SQS endpoint's URL in queue URLs (default http://<sqs-addr>, https with --cert-file)")
	fs.StringVar(&c.sqsAccount, "sqs-account", "000000000000", "the account id in SQS queue URLs and ARNs")
	fs.StringVar(&c.authTokenFile, "auth-token-file", "", "bearer tokens and their roles, one per line: TOKEN producer,consumer,admin [sqs=ACCESS_KEY_ID] (# comments); reread on SIGHUP. Without it, no token is needed")
	fs.BoolVar(&c.metricsAuth, "metrics-auth", false, "with --auth-token-file, /metrics needs a valid token too")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug (one line per request), info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "json", "json (one object per line) or console (for people)")
	fs.StringVar(&c.pprofAddr, "pprof-addr", "", "serve Go's /debug/pprof on this HOST:PORT (off by default; for profiling)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	c.raft.Peers = strings.Split(c.cluster, ",")
	if c.raft.APIURL == "" {
		c.raft.APIURL = "http://" + c.apiAddr
		if c.clientTLS.CertFile != "" {
			c.raft.APIURL = "https://" + c.apiAddr
		}
	}
	if c.dataDir == "" {
		c.dataDir = fmt.Sprintf("raftq-%d", c.raft.ID)
	}
	if c.sqsAdvertise == "" && c.sqsAddr != "" {
		c.sqsAdvertise = "http://" + c.sqsAddr
		if c.clientTLS.CertFile != "" {
			c.sqsAdvertise = "https://" + c.sqsAddr
		}
	}
	if c.listenPeer == "" && c.raft.ID >= 1 && c.raft.ID <= uint64(len(c.raft.Peers)) {
		if u, err := url.Parse(c.raft.Peers[c.raft.ID-1]); err == nil {
			c.listenPeer = u.Host
		}
	}
	return c, c.validate()
}

func (c config) validate() error {
	if c.listenPeer == "" {
		return errors.New("--listen-peer is required when --cluster has no URL for this --id")
	}
	if c.logFormat != "json" && c.logFormat != "console" {
		return fmt.Errorf("--log-format: %q is neither json nor console", c.logFormat)
	}
	rc := c.raft
	rc.Logger = zap.NewNop() // set in main; everything else is the flags'
	if err := rc.Validate(); err != nil {
		return err
	}
	if c.maxMessage <= 0 {
		return errors.New("--max-message-bytes must be positive")
	}
	if c.maxWaiters <= 0 {
		return errors.New("--max-waiters must be positive")
	}
	if c.maxClientConns <= 0 {
		return errors.New("--max-client-conns must be positive")
	}
	if c.requestTimeout <= 0 {
		return errors.New("--request-timeout must be positive")
	}
	t := c.clientTLS
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return errors.New("--cert-file and --key-file go together")
	case t.ClientCertAuth && (t.CertFile == "" || t.TrustedCAFile == ""):
		return errors.New("--client-cert-auth needs --cert-file, --key-file and --trusted-ca-file")
	case t.TrustedCAFile != "" && t.CertFile == "":
		return errors.New("--trusted-ca-file needs --cert-file and --key-file (it would otherwise be ignored, and the API served in plain HTTP)")
	case t.CertFile != "":
		if _, err := t.ServerConfig(); err != nil {
			return fmt.Errorf("client TLS: %w", err)
		}
	}
	if c.metricsAuth && c.authTokenFile == "" {
		return errors.New("--metrics-auth needs --auth-token-file")
	}
	return nil
}

// newLogger logs at level in format: "json" (one object per line, for
// log collectors) or "console" (for people).
func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	if format != "json" && format != "console" {
		return nil, fmt.Errorf("--log-format: %q is neither json nor console", format)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Encoding = format
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.DisableStacktrace = true
	return zc.Build()
}

func main() {
	if os.Getenv("GOGC") == "" {
		go tuneGC(context.Background())
	}
	c, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftq:", err)
		os.Exit(2)
	}
	lg, err := newLogger(c.logLevel, c.logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftq:", err)
		os.Exit(2)
	}
	c.raft.Logger = lg.Named("raftnode")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = run(ctx, c, lg)
	if errors.Is(err, raftnode.ErrRemoved) {
		lg.Warn("this node is no longer a member of the cluster; exiting. Its id is never reused: "+
			"to bring this machine back, wipe its data dir and add it under a new id",
			zap.Uint64("id", c.raft.ID), zap.String("data-dir", c.dataDir))
		lg.Sync()
		return
	}
	if err != nil {
		lg.Error("raftq stopped on an error", zap.Error(err))
		lg.Sync()
		os.Exit(1)
	}
	lg.Info("raftq stopped cleanly")
	lg.Sync()
}

// run serves until ctx ends (a signal) or the node fails.
func run(ctx context.Context, c config, lg *zap.Logger) (failure error) {
	clk, err := newClock()
	if err != nil {
		return err
	}
	port, err := raftnode.NewPeerPort(c.raft)
	if err != nil {
		return err
	}
	// The peer port is served before the data dir is opened: the nodes of
	// a new cluster ask each other there before any of them bootstraps.
	peerL, err := net.Listen("tcp", c.listenPeer)
	if err != nil {
		return fmt.Errorf("peer listener: %w", err)
	}
	if !c.raft.PeerTLS.Empty() {
		if peerL, err = tlsListener(peerL, c.raft.PeerTLS, true); err != nil {
			return err
		}
	}
	peer := newPeerServer(port)
	serveErr := make(chan error, 3) // peer, api, sqs
	go func() { serveErr <- serve(peer, peerL, "peer") }()
	apiL := &lazyListener{addr: c.apiAddr}
	store, node, fsm, err := openNode(ctx, c, lg, port, apiL)
	if err != nil {
		apiL.Close()
		shutdown(peer, time.Second)
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			lg.Info("signal received before this node bootstrapped or joined; nothing was written")
			return nil
		}
		return err
	}
	defer func() {
		// The last fsync: an error here may have lost what was acknowledged.
		if err := store.Close(); err != nil && failure == nil {
			failure = err
		}
	}()
	port.Attach(node)
	var auth httpapi.Authorizer    // nil: no tokens
	var sqsKeys sqsapi.Credentials // nil: any signature
	if c.authTokenFile != "" {
		tk, err := loadTokens(c.authTokenFile)
		if err != nil {
			return err
		}
		lg.Info("auth tokens loaded", zap.Int("tokens", tk.count()))
		go reloadOnHUP(ctx, tk, lg)
		auth, sqsKeys = tk, tk
	}
	svc := &service{node: node, fsm: fsm, clock: clk, store: store, started: time.Now()}
	svc.metrics = newMetrics(svc)
	api := newAPIServer(c, svc, auth, lg)
	if c.pprofAddr != "" {
		go servePprof(c.pprofAddr, lg)
	}
	var apiLn net.Listener = newLimitListener(apiL, c.maxClientConns)
	if !c.clientTLS.Empty() {
		if apiLn, err = tlsListener(apiLn, c.clientTLS, c.clientTLS.ClientCertAuth); err != nil {
			return err
		}
	}
	go func() { serveErr <- serve(api, apiLn, "api") }()
	var sqs *http.Server
	if c.sqsAddr != "" {
		sqsL, err := net.Listen("tcp", c.sqsAddr)
		if err != nil {
			return fmt.Errorf("sqs listener: %w", err)
		}
		var sqsLn net.Listener = newLimitListener(sqsL, c.maxClientConns)
		if !c.clientTLS.Empty() {
			if sqsLn, err = tlsListener(sqsLn, c.clientTLS, c.clientTLS.ClientCertAuth); err != nil {
				sqsL.Close()
				return err
			}
		}
		sqs = newSQSServer(c, svc, sqsKeys, lg)
		go func() { serveErr <- serve(sqs, sqsLn, "sqs") }()
	}

	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeErr := make(chan error, 1)
	go func() { nodeErr <- node.Run(nodeCtx) }()
	publishDone := make(chan struct{})
	go func() { defer close(publishDone); node.PublishAPIURL(nodeCtx) }()
	go svc.tick(nodeCtx, tickEvery)
	alarmDone := make(chan struct{})
	go func() {
		defer close(alarmDone)
		newDiskAlarm(c, svc, lg.Named("alarm")).run(nodeCtx, alarmEvery)
	}()
	lg.Info("raftq serving", zap.Uint64("id", c.raft.ID), zap.String("api", c.apiAddr),
		zap.String("peer", c.listenPeer), zap.String("data-dir", c.dataDir))

	nodeDone := false
	select {
	case <-ctx.Done():
		lg.Info("signal received; shutting down")
	case failure = <-nodeErr:
		nodeDone = true
	case failure = <-serveErr:
	}
	// Answer long polls now (nothing taken is lost: a take under way
	// finishes), finish in-flight client requests, then stop raft, then
	// peers.
	svc.stopWaiting()
	if sqs != nil {
		shutdown(sqs, c.requestTimeout+5*time.Second)
	}
	shutdown(api, c.requestTimeout+5*time.Second) // a take under way gets its whole deadline
	stopNode()
	if !nodeDone {
		if err := <-nodeErr; err != nil && failure == nil {
			failure = err
		}
	}
	<-alarmDone // its proposal, if any, ended with the node
	<-publishDone
	shutdown(peer, time.Second)
	return failure
}

// lazyListener is the API listener, opened once it is needed.
type lazyListener struct {
	addr string
	net.Listener
}

func (l *lazyListener) listen() error {
	if l.Listener != nil {
		return nil
	}
	nl, err := net.Listen("tcp", l.addr)
	if err != nil {
		return fmt.Errorf("api listener: %w", err)
	}
	l.Listener = nl
	return nil
}

func (l *lazyListener) Close() error {
	if l.Listener == nil {
		return nil
	}
	return l.Listener.Close()
}

// DefaultMaxClientConns is --max-client-conns. An open connection costs
// a goroutine and its buffers, some 10-40 KiB, so 4096 hold at most about
// 160 MiB, well inside a node's memory budget. A long poll holds its
// connection while it waits: with HTTP/1.1, at most this many polls wait
// at once whatever --max-waiters says.
const DefaultMaxClientConns = 4096

// limitListener accepts at most max connections open at once (as
// golang.org/x/net/netutil's LimitListener): past them Accept waits for
// one to close, and new connections wait in the kernel's listen backlog,
// costing this process nothing.
type limitListener struct {
	net.Listener
	slots     chan struct{} // one token per open connection
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, max int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, max), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back once, at its first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// CloseWrite passes through, so that net/http can half-close a
// connection (after a refused body) instead of resetting it.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// openNode opens the data dir and builds the node over it, then opens the
// API listener (served by the caller). An empty data dir first gets its
// cluster id from port.Discover, which asks the peers (and refuses a
// member whose data dir was lost) and may wait for them: the API listener
// is opened before, so that whoever waits for this node's API port to
// accept connections sees it do so meanwhile. A data dir that fails to
// open, or a node that cannot start, never opens it.
func openNode(ctx context.Context, c config, lg *zap.Logger, port *raftnode.PeerPort, apiL *lazyListener) (*wal.Store, *raftnode.Node, *notifyingFSM, error) {
	store, err := wal.Open(lg.Named("wal"), c.dataDir, c.raft.ID, func() (uint64, error) {
		if err := apiL.listen(); err != nil {
			return 0, err
		}
		return port.Discover(ctx)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	fsm := newNotifyingFSM()
	node, err := raftnode.New(c.raft, store, fsm)
	if err == nil {
		err = apiL.listen()
	}
	if err != nil {
		return nil, nil, nil, errors.Join(err, store.Close())
	}
	return store, node, fsm, nil
}

func newAPIServer(c config, svc *service, auth httpapi.Authorizer, lg *zap.Logger) *http.Server {
	return &http.Server{
		Handler: httpapi.NewRouter(svc, svc, lg.Named("http"), httpapi.Options{MaxMessageBytes: c.maxMessage,
			RequestTimeout: c.requestTimeout, MaxWaiters: c.maxWaiters, Ops: svc, Metrics: svc.metrics,
			Auth: auth, MetricsAuth: c.metricsAuth, Forward: forwardTransport(c.clientTLS), UI: ui.Handler()}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A long poll: its wait, a take begun as it ends, then a read
		// barrier and a last take under one more request timeout.
		WriteTimeout:   httpapi.MaxWait + 2*c.requestTimeout + 30*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}
}

// newSQSServer serves the SQS endpoint; a receive may wait 20 s.
func newSQSServer(c config, svc *service, keys sqsapi.Credentials, lg *zap.Logger) *http.Server {
	return &http.Server{
		Handler: sqsapi.NewHandler(svc, lg.Named("sqs"), sqsapi.Options{BaseURL: c.sqsAdvertise, Account: c.sqsAccount,
			RequestTimeout: c.requestTimeout, MaxMessageBytes: int(min(c.maxMessage, sqsapi.MaxMessageSize)), MaxWaiters: c.maxWaiters,
			Credentials: keys}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      sqsapi.MaxWaitSeconds*time.Second + 2*c.requestTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// newPeerServer serves the peer port. Peer streams are long-lived HTTP
// responses, so it has no write timeout (as in etcd); reads and idle
// connections are bounded.
func newPeerServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
}

// tickEvery is how often the leader moves the state machine's clock while
// leases or delayed messages are pending.
const tickEvery = 250 * time.Millisecond

// servePprof serves the runtime profiles on their own listener, never on
// the client API.
func servePprof(addr string, lg *zap.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	lg.Info("serving profiles", zap.String("addr", addr))
	if err := srv.ListenAndServe(); err != nil {
		lg.Warn("pprof server stopped", zap.Error(err))
	}
}

func serve(s *http.Server, l net.Listener, name string) error {
	if err := s.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s server: %w", name, err)
	}
	return nil
}

func shutdown(s *http.Server, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		s.Close()
	}
}
