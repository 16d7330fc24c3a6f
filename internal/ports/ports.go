// Package ports hands out loopback ports for the nodes tests start.
package ports

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free returns a loopback address ("127.0.0.1:port") with port in
// [lo, lo+n) that nobody listens on now and that this process has not
// handed out before. Ranges below the kernel's ephemeral ports (32768
// and up) keep a port from being taken by another process binding port 0,
// or by an outgoing connection, between now and the node's start.
func Free(lo, n int) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 10000 {
		port := lo + rand.IntN(n)
		if given[port] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // in use
		}
		l.Close()
		given[port] = true
		return addr, nil
	}
	return "", errors.New(fmt.Sprintf("ports: no free port in %d-%d", lo, lo+n-1))
}
