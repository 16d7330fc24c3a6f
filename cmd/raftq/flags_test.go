package main

import (
	"strings"
	"testing"
	"time"
)

func TestNoFlagsIsASingleNode(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.raft.ID != 1 || len(c.raft.Peers) != 1 || c.raft.Peers[0] != "http://127.0.0.1:12379" ||
		c.apiAddr != "127.0.0.1:12380" || c.listenPeer != "127.0.0.1:12379" || c.dataDir != "raftq-1" ||
		c.raft.SnapshotCount != 10000 || c.maxMessage != 1<<20 || c.requestTimeout != 5*time.Second || c.raft.Join {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFlags(t *testing.T) {
	c, err := parseFlags(strings.Fields("--id 2 --cluster http://a:1,http://b:2 --listen-peer 0.0.0.0:2 --join --snapshot-count 5 --max-message-bytes 10"))
	if err != nil {
		t.Fatal(err)
	}
	if c.raft.ID != 2 || c.listenPeer != "0.0.0.0:2" || c.dataDir != "raftq-2" || !c.raft.Join || c.raft.SnapshotCount != 5 || c.maxMessage != 10 {
		t.Fatalf("parsed %+v", c)
	}
	if c, _ := parseFlags([]string{"--id", "2", "--cluster", "http://a:1,http://b:2"}); c.listenPeer != "b:2" {
		t.Fatalf("listen-peer default %q", c.listenPeer)
	}
	for _, bad := range []string{"--id 3 --cluster http://a:1", "--max-message-bytes 0", "--request-timeout -1s", "extra", "--nope",
		"--metrics-auth", "--cert-file c.pem", "--trusted-ca-file ca.pem", "--client-cert-auth --cert-file c --key-file k",
		"--peer-trusted-ca-file ca.pem", "--peer-cert-file c --peer-key-file k --peer-trusted-ca-file ca", // http:// peers with peer TLS
		"--log-format xml"} {
		if _, err := parseFlags(strings.Fields(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
