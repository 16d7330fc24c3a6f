//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Enabled reports whether failpoints are compiled in.
const Enabled = true

// RAFTQ_FAILPOINTS is a comma-separated list of name=crash@N: the Nth time
// the point named is reached (1-based; "crash" alone means the first), the
// process writes one line to stderr and sends itself SIGKILL, so nothing
// is flushed or closed, exactly as with kill -9.
var points = parse(os.Getenv("RAFTQ_FAILPOINTS"))

type point struct {
	mu   sync.Mutex
	hits int
	at   int
}

func parse(spec string) map[string]*point {
	out := map[string]*point{}
	for _, item := range strings.Split(spec, ",") {
		if item == "" {
			continue
		}
		name, action, ok := strings.Cut(item, "=")
		at := 1
		if n, found := strings.CutPrefix(action, "crash@"); found {
			v, err := strconv.Atoi(n)
			if err != nil || v < 1 {
				ok = false
			}
			at = v
		} else if action != "crash" {
			ok = false
		}
		if !ok {
			fmt.Fprintf(os.Stderr, "RAFTQ_FAILPOINTS: cannot parse %q (want name=crash or name=crash@N)\n", item)
			os.Exit(2)
		}
		out[name] = &point{at: at}
	}
	return out
}

// Inject crashes the process if the point is armed and this is its hit.
func Inject(name string) {
	p := points[name]
	if p == nil {
		return
	}
	p.mu.Lock()
	p.hits++
	hit := p.hits == p.at
	p.mu.Unlock()
	if hit {
		fmt.Fprintf(os.Stderr, "failpoint %s: crashing at hit %d\n", name, p.at)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not deliverable late; never return
	}
}
