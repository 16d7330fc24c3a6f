// Package failpoint marks the places in raftq where the fault suite can
// crash a node on purpose: points in the Ready loop, around snapshots and
// before an HTTP answer. In a normal build Inject does nothing and costs
// nothing; a binary built with -tags failpoints reads the RAFTQ_FAILPOINTS
// environment variable (see enabled.go) and kills itself with SIGKILL at
// the chosen hit of the chosen point.
package failpoint

// Names of the points, as RAFTQ_FAILPOINTS spells them.
const (
	// RaftBeforeSave: a Ready is in hand, nothing of it persisted yet.
	RaftBeforeSave = "raftBeforeSave"
	// RaftAfterSave: entries and HardState are fsynced, no message sent.
	RaftAfterSave = "raftAfterSave"
	// RaftBeforeApply: messages sent, committed entries not yet applied.
	RaftBeforeApply = "raftBeforeApply"
	// RaftAfterApply: entries applied, Advance not yet called.
	RaftAfterApply = "raftAfterApply"
	// RaftBeforeSaveSnap: a snapshot is built but not yet written.
	RaftBeforeSaveSnap = "raftBeforeSaveSnap"
	// RaftAfterSaveSnap: the snapshot file and WAL record are durable, old
	// WAL files not yet released.
	RaftAfterSaveSnap = "raftAfterSaveSnap"
	// WALAfterRelease: old WAL files released and purged.
	WALAfterRelease = "walAfterRelease"
	// APIBeforeRespond: a write is applied; its HTTP answer is not sent.
	APIBeforeRespond = "apiBeforeRespond"
)

// All lists every point, for tools that pick one at random.
var All = []string{
	RaftBeforeSave, RaftAfterSave, RaftBeforeApply, RaftAfterApply,
	RaftBeforeSaveSnap, RaftAfterSaveSnap, WALAfterRelease, APIBeforeRespond,
}
