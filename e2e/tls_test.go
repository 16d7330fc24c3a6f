package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA makes certificates for 127.0.0.1, signed by a CA of its own.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

func newTestCA(t *testing.T, name string) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{t: t, dir: t.TempDir(), cert: cert, key: key}
	ca.file = ca.write(name+"-ca.pem", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(name, typ string, der []byte) string {
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		ca.t.Fatal(err)
	}
	return p
}

// issue makes a certificate for 127.0.0.1 (server and client use) and
// returns its cert and key files.
func (ca *testCA) issue(name string) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return ca.write(name+".pem", "CERTIFICATE", der), ca.write(name+"-key.pem", "EC PRIVATE KEY", kder)
}

// tlsClient trusts ca and presents cert (if given).
func tlsClient(t *testing.T, ca *testCA, certFile, keyFile string) *http.Client {
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(ca.file)
	pool.AppendCertsFromPEM(b)
	cfg := &tls.Config{RootCAs: pool}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// Client TLS with client certificates and peer mutual TLS, three real
// processes: clients with the CA and a certificate are served on every
// node (a membership change through a follower is forwarded to the
// leader over TLS); a client without a certificate, or not trusting the
// CA, is refused at the handshake; a node whose peer certificate another
// CA signed exchanges no raft traffic (the others go on without it), and
// catches up once its certificate is right; a node added at runtime joins
// over TLS.
func TestTLSEndToEnd(t *testing.T) {
	t.Parallel()
	ca, rogue := newTestCA(t, "raftq"), newTestCA(t, "rogue")
	nodeCert, nodeKey := ca.issue("node")
	rogueCert, rogueKey := rogue.issue("rogue-node")
	clientCert, clientKey := ca.issue("client")
	c := prepareCluster(t, 3, nil,
		"--cert-file", nodeCert, "--key-file", nodeKey, "--client-cert-auth", "--trusted-ca-file", ca.file,
		"--peer-trusted-ca-file", ca.file)
	var peers []string
	for _, p := range c.procs {
		p.api = strings.Replace(p.api, "http://", "https://", 1)
		p.peer = strings.Replace(p.peer, "http://", "https://", 1)
		peers = append(peers, p.peer)
		p.flags = []string{"--peer-cert-file", nodeCert, "--peer-key-file", nodeKey}
	}
	c.peers = strings.Join(peers, ",")
	good := tlsClient(t, ca, clientCert, clientKey)
	for _, p := range c.procs {
		harnessTokens.tls.Store(hostPort(p.api), good.Transport)
	}
	c.startAll()
	l := c.leader()
	f, r := (l+1)%3, (l+2)%3
	mustEnqueue(t, c.procs[l], "q", "over tls")
	if body, _, found, err := dequeue(c.procs[f], "q"); err != nil || !found || body != "over tls" {
		t.Fatalf("dequeue on another node: %q %v %v", body, found, err)
	}
	// Node r comes back with a peer certificate another CA signed: it
	// exchanges no raft traffic, while the others go on committing.
	c.kill(r)
	c.procs[r].flags = []string{"--peer-cert-file", rogueCert, "--peer-key-file", rogueKey}
	c.start(r)
	for range 5 {
		mustEnqueue(t, c.procs[f], "q", "m")
	}
	var lead, rogueNode struct{ Applied uint64 }
	getJSON(c.procs[l].api+"/debug/state", &lead)
	if status, err := getJSON(c.procs[r].api+"/debug/state", &rogueNode); err != nil || status != http.StatusOK || rogueNode.Applied >= lead.Applied {
		t.Fatalf("the node with a rogue peer certificate applied %d of the leader's %d (%d %v)", rogueNode.Applied, lead.Applied, status, err)
	}
	if resp, err := good.Get(c.procs[r].api + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the node with a rogue peer certificate is ready: %v %v", resp, err)
	}
	// With the right certificate again it catches up.
	c.kill(r)
	c.procs[r].flags = []string{"--peer-cert-file", nodeCert, "--peer-key-file", nodeKey}
	c.start(r)
	waitFor(t, func() bool { d, err := depths(c.procs[r]); return err == nil && d["q"] == 5 }, "the node catching up with its certificate back")
	// Clients: no certificate, or not trusting the CA, fail at the
	// handshake.
	for name, cl := range map[string]*http.Client{
		"no client certificate": tlsClient(t, ca, "", ""),
		"not trusting the CA":   {Timeout: 10 * time.Second},
		"a rogue certificate":   tlsClient(t, ca, rogueCert, rogueKey),
	} {
		resp, err := cl.Get(c.procs[l].api + "/queues")
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: served with %d", name, resp.StatusCode)
		}
	}
	if resp, err := good.Get(strings.Replace(c.procs[l].api, "https://", "http://", 1) + "/queues"); err == nil {
		if resp.StatusCode < 400 {
			t.Errorf("plain HTTP to a TLS API: %d", resp.StatusCode)
		}
		resp.Body.Close()
	}
	// Forwarded to the leader over TLS.
	if r := mgmt(t, http.MethodPost, c.procs[f].api+"/mgmt/leader", `{"id":`+itoa(c.procs[l].id)+`}`); r.status != http.StatusOK {
		t.Fatalf("leader transfer through a follower: %d %s", r.status, r.body)
	}
	// A node added at runtime joins over TLS.
	p4 := c.newProc(4)
	p4.api = strings.Replace(p4.api, "http://", "https://", 1)
	p4.peer = strings.Replace(p4.peer, "http://", "https://", 1)
	c.peers = strings.Replace(c.peers, "http://", "https://", -1)
	p4.flags = []string{"--peer-cert-file", nodeCert, "--peer-key-file", nodeKey}
	harnessTokens.tls.Store(hostPort(p4.api), good.Transport)
	if r := mgmt(t, http.MethodPost, c.procs[l].api+"/mgmt/nodes", `{"id":4,"peer_url":"`+p4.peer+`","learner":true}`); r.status != http.StatusCreated {
		t.Fatalf("add node 4: %d %s", r.status, r.body)
	}
	c.start(3)
	waitFor(t, func() bool { d, err := depths(p4); return err == nil && d["q"] == 5 }, "node 4 catching up over TLS")
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }
