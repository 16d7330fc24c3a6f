package chaos

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Net is the network between the nodes of a test cluster: one TCP proxy in
// front of each node's peer listener. Every node dials its peers from its
// own loopback address (127.0.0.10+id, raftq's --peer-local-addr), so a
// proxy knows which node each connection comes from and can cut, delay or
// slow each direction of each link on its own.
//
// A cut link silently discards bytes (as a dead network would: the sender
// sees no error, raft sees missing heartbeats). Connections that lost bytes
// are closed when the network heals, so no stream resumes mid-message.
// Loss is modelled as TCP sees it: a lost segment is retransmitted, so with
// probability Loss a chunk arrives one retransmission timeout (200 ms) late.
type Net struct {
	mu     sync.Mutex
	links  map[Link]LinkRule
	conns  map[*proxyConn]struct{}
	rng    *rand.Rand
	closed bool
}

// Link is one direction between two nodes: bytes from From to To.
type Link struct{ From, To uint64 }

// LinkRule is what happens to bytes on a link.
type LinkRule struct {
	Cut   bool
	Delay time.Duration // added to every chunk, plus up to Delay/4 jitter
	Loss  float64       // probability a chunk waits for a retransmission
}

const retransmitTimeout = 200 * time.Millisecond

// NewNet returns a network with every link healthy.
func NewNet(seed uint64) *Net {
	return &Net{links: map[Link]LinkRule{}, conns: map[*proxyConn]struct{}{}, rng: rand.New(rand.NewPCG(seed, 0x6e6574))}
}

// NodeAddr is the loopback address node id dials its peers from.
func NodeAddr(id uint64) string { return fmt.Sprintf("127.0.0.%d", 10+id) }

func nodeOf(addr net.Addr) uint64 {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return 0
	}
	ip := ta.IP.To4()
	if ip == nil || ip[0] != 127 || ip[3] <= 10 {
		return 0
	}
	return uint64(ip[3] - 10)
}

// Set replaces the rule of one link.
func (n *Net) Set(l Link, r LinkRule) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r == (LinkRule{}) {
		delete(n.links, l)
		return
	}
	n.links[l] = r
}

// Heal makes every link healthy and closes connections that lost bytes.
func (n *Net) Heal() {
	n.mu.Lock()
	n.links = map[Link]LinkRule{}
	var tainted []*proxyConn
	for c := range n.conns {
		if c.tainted.Load() {
			tainted = append(tainted, c)
		}
	}
	n.mu.Unlock()
	for _, c := range tainted {
		c.close()
	}
}

func (n *Net) rule(l Link) (LinkRule, float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[l], n.rng.Float64()
}

// Proxy accepts peer connections for node to and forwards them to its real
// listener.
type Proxy struct {
	net    *Net
	to     uint64
	target string
	ln     net.Listener
	wg     sync.WaitGroup
}

// Listen starts a proxy for node to on a free loopback port.
func (n *Net) Listen(to uint64, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("chaos: proxy for node %d: %w", to, err)
	}
	p := &Proxy{net: n, to: to, target: target, ln: ln}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is where peers reach the proxied node.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting and closes every connection through the proxy.
func (p *Proxy) Close() {
	p.ln.Close()
	p.wg.Wait()
	p.net.mu.Lock()
	var mine []*proxyConn
	for c := range p.net.conns {
		if c.proxy == p {
			mine = append(mine, c)
		}
	}
	p.net.mu.Unlock()
	for _, c := range mine {
		c.close()
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(in)
	}
}

type proxyConn struct {
	proxy    *Proxy
	in, out  net.Conn
	once     sync.Once
	tainted  atomic.Bool
	from, to uint64
}

func (p *Proxy) handle(in net.Conn) {
	out, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		in.Close()
		return
	}
	c := &proxyConn{proxy: p, in: in, out: out, from: nodeOf(in.RemoteAddr()), to: p.to}
	p.net.mu.Lock()
	p.net.conns[c] = struct{}{}
	p.net.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pump(out, in, Link{c.from, c.to}) }()
	go func() { defer wg.Done(); c.pump(in, out, Link{c.to, c.from}) }()
	wg.Wait()
	c.close()
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		c.in.Close()
		c.out.Close()
		c.proxy.net.mu.Lock()
		delete(c.proxy.net.conns, c)
		c.proxy.net.mu.Unlock()
	})
}

type chunk struct {
	data []byte
	at   time.Time
}

// pump copies src to dst under the link's rule. A reader stamps each chunk
// with its delivery time and a writer delivers in order, so a delay adds
// latency without cutting throughput.
func (c *proxyConn) pump(dst io.Writer, src io.Reader, l Link) {
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			k, err := src.Read(buf)
			if k > 0 {
				r, dice := c.proxy.net.rule(l)
				// A connection that lost bytes never carries any again:
				// TCP cannot deliver a stream with a hole in it, and
				// rafthttp's MsgApp stream encodes each message against
				// the one before (a hole made a follower read a MsgApp
				// whose entries do not follow its prev index, and panic).
				// Heal lifts the rules before it closes such connections.
				if r.Cut || c.tainted.Load() {
					c.tainted.Store(true)
				} else {
					at := time.Now()
					if r.Delay > 0 {
						at = at.Add(r.Delay + time.Duration(dice*float64(r.Delay/4)))
					}
					if r.Loss > 0 && dice < r.Loss {
						at = at.Add(retransmitTimeout)
					}
					q <- chunk{buf[:k], at}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for ch := range q {
		if d := time.Until(ch.at); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(ch.data); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.close()
			}
			break
		}
	}
	c.close()
	for range q { // let the reader finish
	}
}
