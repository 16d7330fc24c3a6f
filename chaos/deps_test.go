package chaos

// The daemon these tests run is built from these packages by go build,
// which go test's result cache cannot see; importing them here makes a
// change to any of them rerun the tests instead of replaying a cached pass.
import (
	_ "github.com/raftq/raftq/httpapi"
	_ "github.com/raftq/raftq/queuefsm"
	_ "github.com/raftq/raftq/raftnode"
	_ "github.com/raftq/raftq/wal"
)
