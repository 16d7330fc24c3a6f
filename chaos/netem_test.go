package chaos

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c)
		}
	}()
	return l.Addr().String()
}

// dialAs connects to addr as node id would (from its loopback address).
func dialAs(t *testing.T, id uint64, addr string) net.Conn {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(NodeAddr(id))}, Timeout: time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proxyTo2 is a network with node 2's proxy in front of an echo server.
func proxyTo2(t *testing.T) (*Net, *Proxy) {
	n := NewNet(1)
	p, err := n.Listen(2, echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return n, p
}

func roundTrip(c net.Conn, line string) (string, error) {
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

// A cut link loses bytes silently; healing closes the connections that
// lost bytes, so no stream resumes in the middle of a message. Other
// links and the reverse direction's rules are independent.
func TestNetCutAndHeal(t *testing.T) {
	n, p := proxyTo2(t)

	from1, from3 := dialAs(t, 1, p.Addr()), dialAs(t, 3, p.Addr())
	if got, err := roundTrip(from1, "hello"); err != nil || got != "hello\n" {
		t.Fatalf("healthy link: %q %v", got, err)
	}
	if nodeOf(from1.LocalAddr()) != 1 {
		t.Fatalf("node of %v", from1.LocalAddr())
	}

	n.Set(Link{1, 2}, LinkRule{Cut: true})
	if _, err := from1.Write([]byte("lost\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(from3, "other link"); err != nil || got != "other link\n" {
		t.Fatalf("node 3's link must be untouched: %q %v", got, err)
	}
	n.Heal()
	from1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := bufio.NewReader(from1).ReadString('\n'); err == nil {
		t.Fatalf("read %q through a cut link; want the connection closed at heal", b)
	}
	if got, err := roundTrip(from3, "still there"); err != nil || got != "still there\n" {
		t.Fatalf("an untainted connection must survive the heal: %q %v", got, err)
	}
	if got, err := roundTrip(dialAs(t, 1, p.Addr()), "again"); err != nil || got != "again\n" {
		t.Fatalf("after heal: %q %v", got, err)
	}
	// Lifting the rule alone (Heal lifts the rules before it closes the
	// connections) must not let one that lost bytes carry any again.
	c := dialAs(t, 1, p.Addr())
	if got, err := roundTrip(c, "before"); err != nil || got != "before\n" {
		t.Fatalf("a fresh connection: %q %v", got, err)
	}
	n.Set(Link{1, 2}, LinkRule{Cut: true})
	c.Write([]byte("lost\n"))
	waitTainted(t, n)
	n.Set(Link{1, 2}, LinkRule{})
	c.Write([]byte("after the hole\n"))
	c.SetReadDeadline(time.Now().Add(time.Second))
	if b, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Fatalf("read %q through a connection that lost bytes", b)
	}
}

// waitTainted waits until a connection through n has lost bytes.
func waitTainted(t *testing.T, n *Net) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n.mu.Lock()
		found := false
		for c := range n.conns {
			found = found || c.tainted.Load()
		}
		n.mu.Unlock()
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection lost bytes")
		}
		time.Sleep(time.Millisecond)
	}
}

// A one-way cut drops only one direction: node 1's bytes reach node 2,
// node 2's answers do not.
func TestNetOneWay(t *testing.T) {
	n, p := proxyTo2(t)
	c := dialAs(t, 1, p.Addr())
	n.Set(Link{2, 1}, LinkRule{Cut: true})
	c.Write([]byte("ping\n"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if b, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Fatalf("answer %q crossed a cut 2→1 link", b)
	}
}
