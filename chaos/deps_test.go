package chaos

import (
	"os"
	"path/filepath"
	"testing"

	// The daemon these tests run is built from these packages by go
	// build, which go test's result cache cannot see; importing them
	// here makes a change to any of them rerun the tests instead of
	// replaying a cached pass.
	_ "github.com/raftq/raftq/httpapi"
	_ "github.com/raftq/raftq/queuefsm"
	_ "github.com/raftq/raftq/raftnode"
	_ "github.com/raftq/raftq/sqsapi"
	_ "github.com/raftq/raftq/wal"
)

// The daemon's own package (cmd/raftq) cannot be imported: reading its
// files here puts them in the result cache's key (go test records the
// files a test opens), for the same reason.
func TestDaemonSources(t *testing.T) {
	files, err := filepath.Glob("../cmd/raftq/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("the daemon's sources: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
}
