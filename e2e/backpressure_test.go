package e2e

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// A node serves at most --max-client-conns connections at once: one more
// waits (in the listen backlog) until an open one closes, then is served.
func TestClientConnectionCap(t *testing.T) {
	const max = 3
	c := startCluster(t, 1, "--max-client-conns=3")
	p := c.procs[0]
	client.CloseIdleConnections() // the harness's own, left from startCluster
	// Each holder's connection has been served once, so it holds a slot,
	// and stays open, idle, after it.
	var holders []*http.Transport
	t.Cleanup(func() {
		for _, h := range holders {
			h.CloseIdleConnections()
		}
	})
	for range max {
		tr := &http.Transport{MaxIdleConnsPerHost: 1}
		holders = append(holders, tr)
		resp, err := (&http.Client{Transport: tr, Timeout: 60 * time.Second}).Get(p.api + "/queues")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	answered := make(chan error, 1)
	go func() {
		probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 60 * time.Second}
		resp, err := probe.Get(p.api + "/mgmt/nodes")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = &statusError{resp.StatusCode}
			}
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a connection past the cap of %d was served (%v)", max, err)
	case <-time.After(500 * time.Millisecond):
	}
	holders[0].CloseIdleConnections()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("the waiting connection, once one closed: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the waiting connection was not served after one closed")
	}
	if !p.running() {
		t.Fatal("the node stopped")
	}
}

type statusError struct{ status int }

func (e *statusError) Error() string { return http.StatusText(e.status) }
