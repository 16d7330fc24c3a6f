// Package wal owns raftq's disk format: etcd's write-ahead log and snapshot
// files under one data directory. It replays them into a raft.MemoryStorage
// on start and enforces the order in which raft state becomes durable.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	etcdwal "go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/raftq/raftq/internal/failpoint"
)

// keepFiles is how many snapshot files and released WAL segments are kept
// on disk after a snapshot; older ones are removed.
const keepFiles = 5

// ErrMissingWAL reports a data directory whose snapshot directory holds
// snapshots but which has no WAL: the node's log was lost, and starting a
// fresh one would forget what this node acknowledged.
var ErrMissingWAL = errors.New("wal: the WAL is missing but snapshots remain")

// ErrWrongNode reports a data directory that belongs to another node id.
var ErrWrongNode = errors.New("wal: data dir belongs to another node")

// LegacyClusterID is the cluster id of every cluster whose WAL was created
// before the cluster id was stored in it: such a WAL's metadata holds the
// node id only.
const LegacyClusterID uint64 = 0x7261667471

// Store is the durable raft state of one node. It is not safe for
// concurrent use: the raft goroutine owns it.
type Store struct {
	lg          *zap.Logger
	walDir      string
	snapDir     string
	clusterID   uint64
	w           *etcdwal.WAL
	snapshotter *snap.Snapshotter
	mem         *raft.MemoryStorage
	existed     bool
	snapshot    *raftpb.Snapshot
	// snapMu orders snapshot writes (our own, which run in the
	// background, and received ones in Save) and the releases and purges
	// that follow them. Plain Saves do not take it.
	snapMu sync.Mutex
}

// Open opens the data directory of node id and replays the WAL and the
// snapshot it names into memory. A torn record at the end of the WAL (a
// crash mid-write) is repaired by truncation; any other corruption is an
// error and nothing is started.
//
// When dir holds no WAL yet, Open first calls newClusterID (which may
// block, asking peers) and only then creates the WAL, recording id and the
// cluster id in its metadata; an error from newClusterID, or a nil
// newClusterID, leaves no WAL behind. On an existing WAL newClusterID is
// not called: the cluster id is the one recorded (LegacyClusterID for a
// WAL that records none).
func Open(lg *zap.Logger, dir string, id uint64, newClusterID func() (uint64, error)) (*Store, error) {
	s := &Store{
		lg:      lg,
		walDir:  filepath.Join(dir, "wal"),
		snapDir: filepath.Join(dir, "snap"),
		mem:     raft.NewMemoryStorage(),
	}
	s.snapshotter = snap.New(lg, s.snapDir)
	if !etcdwal.Exist(s.walDir) {
		if err := s.checkNoSnapshots(dir); err != nil {
			return nil, err
		}
		if err := s.create(id, newClusterID); err != nil {
			return nil, err
		}
		return s, nil
	}
	s.existed = true
	if err := s.makeSnapDir(); err != nil {
		return nil, err
	}
	if err := s.removeTempStates(); err != nil {
		return nil, err
	}
	if err := s.replay(id); err != nil {
		if s.w != nil {
			s.w.Close()
		}
		return nil, err
	}
	return s, nil
}

// checkNoSnapshots refuses a data dir without a WAL whose snapshot
// directory holds snapshots or state files: never start a fresh log there.
func (s *Store) checkNoSnapshots(dir string) error {
	entries, err := os.ReadDir(s.snapDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wal: read snap dir: %w", err)
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasSuffix(name, ".snap") || strings.HasSuffix(name, ".snap.db") {
			return fmt.Errorf("%w: %s holds no WAL, yet %s holds %s. This node's log is lost: "+
				"restore %s from a backup, or wipe the whole data dir %s and add this machine to the cluster under a new id",
				ErrMissingWAL, s.walDir, s.snapDir, name, s.walDir, dir)
		}
	}
	return nil
}

// create makes a new WAL for node id in a cluster whose id newClusterID
// gives; nothing is written before that id is known.
func (s *Store) create(id uint64, newClusterID func() (uint64, error)) error {
	if newClusterID == nil {
		return fmt.Errorf("wal: %s holds no WAL and Open was given no way to learn the cluster id", s.walDir)
	}
	cid, err := newClusterID()
	if err != nil {
		return fmt.Errorf("wal: cluster id for a new WAL: %w", err)
	}
	if cid == 0 {
		return errors.New("wal: cluster id for a new WAL: got 0, which is not a cluster id")
	}
	if err := s.makeSnapDir(); err != nil {
		return err
	}
	meta := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, id), cid)
	w, err := etcdwal.Create(s.lg, s.walDir, meta)
	if err != nil {
		return fmt.Errorf("wal: create: %w", err)
	}
	s.w, s.clusterID = w, cid
	return nil
}

func (s *Store) makeSnapDir() error {
	if err := fileutil.TouchDirAll(s.lg, s.snapDir); err != nil {
		return fmt.Errorf("wal: create snap dir: %w", err)
	}
	return nil
}

// parseMeta reads a WAL's metadata: node id then cluster id, 8 bytes
// big-endian each; or the node id alone, in a WAL from before cluster ids.
func parseMeta(meta []byte) (node, cluster uint64, err error) {
	switch len(meta) {
	case 16:
		return binary.BigEndian.Uint64(meta), binary.BigEndian.Uint64(meta[8:]), nil
	case 8:
		return binary.BigEndian.Uint64(meta), LegacyClusterID, nil
	}
	return 0, 0, fmt.Errorf("wal: metadata of %d bytes, want 16 (node and cluster id) or 8 (node id)", len(meta))
}

// replay loads the newest snapshot the WAL names, then the WAL after it.
func (s *Store) replay(id uint64) error {
	walSnaps, err := etcdwal.ValidSnapshotEntries(s.lg, s.walDir)
	if err != nil {
		return fmt.Errorf("wal: scan snapshot records: %w", err)
	}
	var snapshot *raftpb.Snapshot
	for {
		snapshot, err = s.snapshotter.LoadNewestAvailable(walSnaps)
		if err != nil && !errors.Is(err, snap.ErrNoSnapshot) {
			return fmt.Errorf("wal: load snapshot: %w", err)
		}
		if snapshot == nil {
			break
		}
		err := s.verifyState(snapshot)
		if err == nil {
			break
		}
		// As etcd does with a damaged snapshot file: fall back to an
		// older snapshot the WAL names (the WAL after it is still there,
		// or replay below fails).
		s.setAside(snapshot, err)
		idx := snapshot.GetMetadata().GetIndex()
		walSnaps = slices.DeleteFunc(walSnaps, func(w *walpb.Snapshot) bool { return w.GetIndex() == idx })
	}
	walSnap := &walpb.Snapshot{Index: new(uint64(0)), Term: new(uint64(0))}
	if snapshot != nil {
		md := snapshot.GetMetadata()
		walSnap = &walpb.Snapshot{Index: new(md.GetIndex()), Term: new(md.GetTerm()), ConfState: md.GetConfState()}
	}
	gotMeta, hs, ents, err := s.readWAL(walSnap)
	if err != nil {
		return err
	}
	node, cluster, err := parseMeta(gotMeta)
	if err != nil {
		return err
	}
	if node != id {
		return fmt.Errorf("%w: dir %s was created by node %d, this is node %d", ErrWrongNode, s.walDir, node, id)
	}
	s.clusterID = cluster
	if snapshot != nil {
		if err := s.mem.ApplySnapshot(snapshot); err != nil {
			return fmt.Errorf("wal: apply snapshot to memory: %w", err)
		}
		s.snapshot = snapshot
	}
	if err := s.mem.SetHardState(hs); err != nil {
		return fmt.Errorf("wal: set hard state: %w", err)
	}
	if err := s.mem.Append(ents); err != nil {
		return fmt.Errorf("wal: append replayed entries: %w", err)
	}
	return nil
}

// readWAL opens the WAL at walSnap and reads it to the end, repairing a
// torn tail once.
func (s *Store) readWAL(walSnap *walpb.Snapshot) ([]byte, *raftpb.HardState, []*raftpb.Entry, error) {
	if err := checkDamage(s.walDir); err != nil {
		return nil, nil, nil, fmt.Errorf("wal: refusing to start on a damaged log: %w", err)
	}
	repaired := false
	for {
		w, err := etcdwal.Open(s.lg, s.walDir, walSnap)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("wal: open: %w", err)
		}
		meta, hs, ents, err := w.ReadAll()
		if err == nil {
			s.w = w
			return meta, hs, ents, nil
		}
		w.Close()
		if repaired || !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, nil, fmt.Errorf("wal: read %s (refusing to start on a damaged log): %w", s.walDir, err)
		}
		if !etcdwal.Repair(s.lg, s.walDir) {
			return nil, nil, nil, fmt.Errorf("wal: repair torn tail in %s: %w", s.walDir, err)
		}
		s.lg.Warn("repaired torn WAL tail", zap.String("dir", s.walDir))
		repaired = true
	}
}

// ClusterID is the id of the cluster this node's WAL belongs to.
func (s *Store) ClusterID() uint64 { return s.clusterID }

// Existed reports whether Open found an existing WAL (a restart).
func (s *Store) Existed() bool { return s.existed }

// Storage is the replayed log that raft reads from.
func (s *Store) Storage() *raft.MemoryStorage { return s.mem }

// Snapshot is the snapshot found by Open, or nil.
func (s *Store) Snapshot() *raftpb.Snapshot { return s.snapshot }

// Save makes one Ready's state durable, in the order raft requires: the
// snapshot file, the WAL snapshot record, entries then HardState (fsynced
// when raft says it must be), and only then the in-memory log. Old WAL files
// are released after a snapshot is durable. Save must not be retried after
// an error: the caller stops. An error wrapping ErrSnapshotUnusable
// stored nothing: the received snapshot's state file did not match and
// was set aside, so that, restarted, the node fetches it again.
func (s *Store) Save(hs *raftpb.HardState, ents []*raftpb.Entry, snapshot *raftpb.Snapshot) error {
	hasSnap := snapshot != nil && !raft.IsEmptySnap(snapshot)
	if hasSnap {
		s.snapMu.Lock()
		defer s.snapMu.Unlock()
		// A received snapshot's state file came over the network before
		// the message: check it before the WAL names it. A bad one is set
		// aside, so that this node, stopped by the error, gets a new copy
		// after its restart instead of failing on the same file again.
		if err := s.checkReceived(snapshot); err != nil {
			return err
		}
		if err := s.saveSnapshot(snapshot); err != nil {
			return err
		}
	}
	if err := s.w.Save(hs, ents); err != nil {
		return fmt.Errorf("wal: save entries and hard state: %w", err)
	}
	if hasSnap {
		if err := s.mem.ApplySnapshot(snapshot); err != nil {
			return fmt.Errorf("wal: apply snapshot to memory: %w", err)
		}
		if err := s.release(snapshot.GetMetadata().GetIndex()); err != nil {
			return err
		}
	}
	if err := s.mem.Append(ents); err != nil {
		return fmt.Errorf("wal: append to memory: %w", err)
	}
	return nil
}

// CreateSnapshot records the state machine at applied index idx as a
// snapshot: write streams the state into a new file (fsynced) that then
// takes the state file's name, setting aside a different file found
// there; then the snapshot, holding meta and the checksum of the bytes in
// that file, is made durable.
// The in-memory log is compacted up to compactTo (which callers keep
// below idx so slow followers can still be sent entries rather than a
// whole snapshot). It may run on another goroutine than Save. It returns
// the state's size.
func (s *Store) CreateSnapshot(idx, compactTo uint64, cs *raftpb.ConfState, meta []byte, write func(io.Writer) error) (int64, error) {
	tmp, size, sum, err := s.writeState(idx, write)
	if err != nil {
		return 0, err
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	newest, err := s.mem.Snapshot()
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("wal: newest snapshot: %w", err)
	}
	if newest.GetMetadata().GetIndex() >= idx {
		// A snapshot received from the leader got there first: its state
		// file may be the one at idx, and it stays.
		os.Remove(tmp)
		return size, nil
	}
	if err := s.installState(tmp, idx, size, sum); err != nil {
		return 0, err
	}
	snapshot, err := s.mem.CreateSnapshot(idx, cs, encodeSnapData(size, sum, meta))
	if err != nil {
		return 0, fmt.Errorf("wal: create snapshot at %d: %w", idx, err)
	}
	failpoint.Inject(failpoint.RaftBeforeSaveSnap)
	if err := s.saveSnapshot(snapshot); err != nil {
		return 0, err
	}
	failpoint.Inject(failpoint.RaftAfterSaveSnap)
	if err := s.release(idx); err != nil {
		return 0, err
	}
	failpoint.Inject(failpoint.WALAfterRelease)
	if compactTo == 0 {
		return size, nil
	}
	if err := s.mem.Compact(compactTo); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return 0, fmt.Errorf("wal: compact to %d: %w", compactTo, err)
	}
	return size, nil
}

// saveSnapshot writes the snapshot file first and the WAL record naming it
// second, so the WAL never names a snapshot that is not on disk.
func (s *Store) saveSnapshot(snapshot *raftpb.Snapshot) error {
	if err := s.snapshotter.SaveSnap(snapshot); err != nil {
		return fmt.Errorf("wal: save snapshot file: %w", err)
	}
	md := snapshot.GetMetadata()
	rec := &walpb.Snapshot{Index: new(md.GetIndex()), Term: new(md.GetTerm()), ConfState: md.GetConfState()}
	if err := s.w.SaveSnapshot(rec); err != nil { // fsyncs
		return fmt.Errorf("wal: save snapshot record: %w", err)
	}
	return nil
}

// release unlocks WAL segments wholly before idx and removes old files.
func (s *Store) release(idx uint64) error {
	if err := s.w.ReleaseLockTo(idx); err != nil {
		return fmt.Errorf("wal: release segments before %d: %w", idx, err)
	}
	if err := purge(s.walDir, ".wal", keepFiles, true); err != nil {
		return err
	}
	if err := purge(s.snapDir, ".snap", keepFiles, false); err != nil {
		return err
	}
	return s.purgeStates()
}

// Snapshotter is the snapshot directory, for rafthttp to save the state
// files of snapshots that peers send.
func (s *Store) Snapshotter() *snap.Snapshotter { return s.snapshotter }

// Close closes the WAL.
func (s *Store) Close() error {
	if err := s.w.Close(); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}

// DiskUsage is the bytes the WAL files and the snapshot files take on
// disk now (what their sizes say; preallocated WAL space counts).
func (s *Store) DiskUsage() (walBytes, snapBytes int64, err error) {
	if walBytes, err = dirBytes(s.walDir); err != nil {
		return 0, 0, err
	}
	snapBytes, err = dirBytes(s.snapDir)
	return walBytes, snapBytes, err
}

func dirBytes(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("wal: read %s: %w", dir, err)
	}
	var total int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
	}
	return total, nil
}
