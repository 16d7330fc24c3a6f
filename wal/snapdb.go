package wal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// A snapshot's state lives in its own file beside the snapshot,
// "<index>.snap.db", written by etcd's Snapshotter.SaveDBFrom (and by
// rafthttp when a leader sends one). The raft snapshot itself carries only
// a small payload: a marker, the state file's size and SHA-256, then the
// caller's metadata. So neither the MemoryStorage nor a snapshot message
// ever holds the whole state in memory, and a state file that does not
// match its snapshot is never restored.
var stateMagic = []byte("raftq-state\x01")

// errStateMismatch: a state file's size or SHA-256 is not its snapshot's.
var errStateMismatch = errors.New("state file does not match its snapshot")

// ErrSnapshotUnusable reports a snapshot received from a peer whose state
// file is missing or does not match the snapshot. The file has been set
// aside (".broken"), so the next copy the leader sends is written afresh;
// nothing of the snapshot was stored.
var ErrSnapshotUnusable = errors.New("wal: received snapshot unusable, it must be fetched again")

// tempStateSuffix marks a state file still being written by CreateSnapshot.
const tempStateSuffix = ".snap.db.tmp"

func encodeSnapData(size int64, sum []byte, meta []byte) []byte {
	b := append([]byte(nil), stateMagic...)
	b = binary.AppendUvarint(b, uint64(size))
	b = append(b, sum...)
	return append(b, meta...)
}

// decodeSnapData splits a snapshot payload. ok is false for a snapshot
// that carries its state inline (written before state files existed).
func decodeSnapData(data []byte) (size int64, sum, meta []byte, ok bool) {
	rest, found := bytes.CutPrefix(data, stateMagic)
	if !found {
		return 0, nil, data, false
	}
	n, k := binary.Uvarint(rest)
	if k <= 0 || len(rest)-k < sha256.Size {
		return 0, nil, data, false
	}
	rest = rest[k:]
	return int64(n), rest[:sha256.Size], rest[sha256.Size:], true
}

// stateWriter counts and hashes what reaches a state file, and keeps the
// first error of the file, which later writes return again.
type stateWriter struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (s *stateWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	s.err = err
	return n, err
}

// writeState streams write into a new temporary file in the snapshot
// directory and fsyncs it. The size and SHA-256 returned are those of the
// bytes that reached the file. A failure of the file is reported as the
// cause, whatever write returned.
func (s *Store) writeState(idx uint64, write func(io.Writer) error) (tmp string, size int64, sum []byte, err error) {
	f, err := os.CreateTemp(s.snapDir, fmt.Sprintf("%016x%s*", idx, tempStateSuffix))
	if err != nil {
		return "", 0, nil, fmt.Errorf("wal: create state file at %d: %w", idx, err)
	}
	sw := &stateWriter{w: f, h: sha256.New()}
	werr := write(sw)
	switch {
	case sw.err != nil:
		err = fmt.Errorf("wal: write state file %s: %w", f.Name(), sw.err)
	case werr != nil:
		err = fmt.Errorf("wal: write snapshot state at %d: %w", idx, werr)
	default:
		if err = fileutil.Fsync(f); err != nil {
			err = fmt.Errorf("wal: fsync state file %s: %w", f.Name(), err)
		}
	}
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("wal: close state file %s: %w", f.Name(), cerr)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", 0, nil, err
	}
	return f.Name(), sw.n, sw.h.Sum(nil), nil
}

// installState renames the temporary state file tmp to the state file of
// snapshot idx, durably. A file already there that does not hold the same
// bytes (a stray or planted file, or a copy received damaged) is set aside,
// never trusted by its name. The caller holds snapMu.
func (s *Store) installState(tmp string, idx uint64, size int64, sum []byte) error {
	path := s.statePath(idx)
	if err := checkState(path, size, sum); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.setAsideState(idx, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("wal: install state file at %d: %w", idx, err)
	}
	return s.syncSnapDir()
}

// checkState reads the file at path through: nil when it holds size
// bytes with SHA-256 sum.
func checkState(path string, size int64, sum []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, &verifyingReader{f: f, h: sha256.New(), size: size, sum: sum})
	return err
}

func (s *Store) syncSnapDir() error {
	d, err := fileutil.OpenDir(s.snapDir)
	if err != nil {
		return fmt.Errorf("wal: open snap dir: %w", err)
	}
	defer d.Close()
	if err := fileutil.Fsync(d); err != nil {
		return fmt.Errorf("wal: fsync snap dir: %w", err)
	}
	return nil
}

// verifyingReader reads a state file and fails at its end, instead of
// returning io.EOF, when the bytes read do not match the snapshot.
type verifyingReader struct {
	f    *os.File
	h    hash.Hash
	n    int64
	size int64
	sum  []byte
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if errors.Is(err, io.EOF) && (v.n != v.size || !bytes.Equal(v.h.Sum(nil), v.sum)) {
		return n, fmt.Errorf("wal: %s: %w (%d bytes, %d expected)", v.f.Name(), errStateMismatch, v.n, v.size)
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }

func (s *Store) statePath(index uint64) string {
	return filepath.Join(s.snapDir, fmt.Sprintf("%016x.snap.db", index))
}

// OpenSnapshot returns what snapshot holds: the metadata given to
// CreateSnapshot and a reader of the state, which fails at its end unless
// every byte matched. A snapshot written before state files existed has
// no state reader: its payload, returned as meta, holds everything.
func (s *Store) OpenSnapshot(snapshot *raftpb.Snapshot) (meta []byte, state io.ReadCloser, err error) {
	size, sum, meta, ok := decodeSnapData(snapshot.GetData())
	if !ok {
		return meta, nil, nil
	}
	f, err := s.openState(snapshot)
	if err != nil {
		return nil, nil, err
	}
	return meta, &verifyingReader{f: f, h: sha256.New(), size: size, sum: sum}, nil
}

func (s *Store) openState(snapshot *raftpb.Snapshot) (*os.File, error) {
	f, err := os.Open(s.statePath(snapshot.GetMetadata().GetIndex()))
	if err != nil {
		return nil, fmt.Errorf("wal: open snapshot state: %w", err)
	}
	return f, nil
}

// SnapshotState opens the state file of snapshot for sending to a peer,
// with its size. ok is false when the snapshot carries its state inline.
func (s *Store) SnapshotState(snapshot *raftpb.Snapshot) (rc io.ReadCloser, size int64, ok bool, err error) {
	size, _, _, ok = decodeSnapData(snapshot.GetData())
	if !ok {
		return nil, 0, false, nil
	}
	f, err := s.openState(snapshot)
	if err != nil {
		return nil, 0, true, err
	}
	return f, size, true, nil
}

// verifyState reads snapshot's state file through and checks it.
func (s *Store) verifyState(snapshot *raftpb.Snapshot) error {
	_, rc, err := s.OpenSnapshot(snapshot)
	if err != nil || rc == nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return err
	}
	return nil
}

// CheckReceivedSnapshot checks the state file of a snapshot received from a
// peer, which rafthttp saved under its index before handing the message on,
// and which etcd's Snapshotter keeps when a file of that name is already
// there. Call it before raft steps the message: raft takes a snapshot
// irrevocably. A missing or mismatched file is set aside and the error
// wraps ErrSnapshotUnusable; any other error is the disk's. A snapshot
// that carries its state inline needs no file: nil.
func (s *Store) CheckReceivedSnapshot(snapshot *raftpb.Snapshot) error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	return s.checkReceived(snapshot)
}

// checkReceived is CheckReceivedSnapshot for a caller that holds snapMu.
func (s *Store) checkReceived(snapshot *raftpb.Snapshot) error {
	err := s.verifyState(snapshot)
	if err == nil {
		return nil
	}
	idx := snapshot.GetMetadata().GetIndex()
	switch {
	case errors.Is(err, errStateMismatch):
		s.setAsideState(idx, err)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("wal: check received snapshot at %d: %w", idx, err)
	}
	return fmt.Errorf("%w: at %d: %w", ErrSnapshotUnusable, idx, err)
}

// setAsideState renames the state file of snapshot idx, which does not
// match what it must hold, so that a correct one can take its name.
func (s *Store) setAsideState(idx uint64, why error) {
	p := s.statePath(idx)
	s.lg.Warn("setting aside a state file that does not match its snapshot", zap.String("path", p), zap.Error(why))
	if err := os.Rename(p, p+".broken"); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.lg.Warn("could not set aside", zap.String("path", p), zap.Error(err))
	}
}

// removeTempStates removes state files that a crash left half written.
func (s *Store) removeTempStates() error {
	names, err := filepath.Glob(filepath.Join(s.snapDir, "*"+tempStateSuffix+"*"))
	if err != nil {
		return fmt.Errorf("wal: list temporary state files: %w", err)
	}
	for _, name := range names {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: remove temporary state file: %w", err)
		}
	}
	return nil
}

// setAside renames a snapshot whose state is damaged or missing, with its
// state file, so an older snapshot is used and the evidence kept.
func (s *Store) setAside(snapshot *raftpb.Snapshot, why error) {
	md := snapshot.GetMetadata()
	name := filepath.Join(s.snapDir, fmt.Sprintf("%016x-%016x.snap", md.GetTerm(), md.GetIndex()))
	s.lg.Warn("setting aside a snapshot whose state is damaged", zap.String("path", name), zap.Error(why))
	for _, p := range []string{name, s.statePath(md.GetIndex())} {
		if err := os.Rename(p, p+".broken"); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.lg.Warn("could not set aside", zap.String("path", p), zap.Error(err))
		}
	}
}

// purgeStates removes state files older than the oldest snapshot kept.
// Newer ones stay: one may be a snapshot a peer is sending, not yet saved.
func (s *Store) purgeStates() error {
	entries, err := os.ReadDir(s.snapDir)
	if err != nil {
		return fmt.Errorf("wal: purge states: %w", err)
	}
	oldest := uint64(0)
	var states []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".snap.db"):
			states = append(states, name)
		case strings.HasSuffix(name, ".snap"):
			_, idx, found := strings.Cut(strings.TrimSuffix(name, ".snap"), "-")
			if i, err := strconv.ParseUint(idx, 16, 64); found && err == nil && (oldest == 0 || i < oldest) {
				oldest = i
			}
		}
	}
	for _, name := range states {
		i, err := strconv.ParseUint(strings.TrimSuffix(name, ".snap.db"), 16, 64)
		if err != nil || i >= oldest {
			continue
		}
		if err := os.Remove(filepath.Join(s.snapDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: purge state: %w", err)
		}
	}
	return nil
}
