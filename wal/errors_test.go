package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/raft/v3/raftpb"
)

// noSnapshotAt checks that a failed CreateSnapshot left nothing behind.
func noSnapshotAt(t *testing.T, s *Store, dir string, idx uint64) {
	t.Helper()
	if snap, _ := s.Storage().Snapshot(); snap.GetMetadata().GetIndex() == idx {
		t.Fatalf("a snapshot at %d was created", idx)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "snap", "*.snap.db*"))
	if len(left) != 0 {
		t.Fatalf("state files left: %v", left)
	}
}

func TestStateWriterErrorIsReported(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close()
	if err := s.Save(hardState(1, 10), entries(1, 1, 10), nil); err != nil {
		t.Fatal(err)
	}
	errEncode := errors.New("encode failed")
	cs := &raftpb.ConfState{Voters: []uint64{1}}
	_, err := s.CreateSnapshot(10, 0, cs, nil, func(w io.Writer) error {
		if _, err := w.Write(bytes.Repeat([]byte("x"), 100<<10)); err != nil {
			return err
		}
		return errEncode
	})
	if !errors.Is(err, errEncode) {
		t.Fatalf("err = %v, want %v", err, errEncode)
	}
	noSnapshotAt(t, s, dir, 10)
	if _, err := s.CreateSnapshot(10, 0, cs, nil, writeString("state@10")); err != nil {
		t.Fatalf("the next snapshot: %v", err)
	}
}

// The disk's error is the one reported, however the state's writer
// passes it on (the encoder may replace it with its own, or drop it).
func TestStateFileDiskErrorIsReported(t *testing.T) {
	const limit = 1 << 20
	writers := map[string]func(io.Writer) error{
		"writer wraps it with %v": func(w io.Writer) error {
			for range 64 {
				if _, err := w.Write(make([]byte, 64<<10)); err != nil {
					return fmt.Errorf("encode: %v", err)
				}
			}
			return nil
		},
		"writer drops it": func(w io.Writer) error {
			for range 64 {
				w.Write(make([]byte, 64<<10))
			}
			return nil
		},
	}
	for name, write := range writers {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			defer s.Close()
			if err := s.Save(hardState(1, 10), entries(1, 1, 10), nil); err != nil {
				t.Fatal(err)
			}
			// A file size limit makes the state file's writes fail past 1
			// MiB (EFBIG), as a full disk would (ENOSPC). The WAL writes
			// nothing meanwhile.
			var old syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Skip(err)
			}
			lim := old
			lim.Cur = limit
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
				t.Skip(err)
			}
			_, err := s.CreateSnapshot(10, 0, &raftpb.ConfState{Voters: []uint64{1}}, nil, write)
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
			if !errors.Is(err, syscall.EFBIG) {
				t.Fatalf("err = %v, want the disk's EFBIG", err)
			}
			noSnapshotAt(t, s, dir, 10)
		})
	}
	t.Run("snap dir gone", func(t *testing.T) {
		dir := t.TempDir()
		s := mustOpen(t, dir)
		defer s.Close()
		if err := s.Save(hardState(1, 10), entries(1, 1, 10), nil); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "snap")); err != nil {
			t.Fatal(err)
		}
		_, err := s.CreateSnapshot(10, 0, &raftpb.ConfState{Voters: []uint64{1}}, nil, writeString("state@10"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want ErrNotExist", err)
		}
	})
}

func segments(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPurgeStopsAtASegmentInUse(t *testing.T) {
	dir := t.TempDir()
	segments(t, dir, "1.wal", "2.wal", "3.wal")
	l, err := fileutil.LockFile(filepath.Join(dir, "2.wal"), os.O_WRONLY, fileutil.PrivateFileMode)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := purge(dir, ".wal", 1, true); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(left) != 2 {
		t.Fatalf("left %v, want 2.wal and 3.wal", left)
	}
}

// Only a lock held elsewhere means "in use"; a segment that cannot be
// locked for another reason is an error, not a silent stop.
func TestPurgeReportsAFailedLock(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "1.wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	segments(t, dir, "2.wal", "3.wal")
	err := purge(dir, ".wal", 1, true)
	if !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("err = %v, want the lock's EISDIR", err)
	}
}
