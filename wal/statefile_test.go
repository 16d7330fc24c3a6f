package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
)

func statePathIn(dir string, index uint64) string {
	return (&Store{snapDir: filepath.Join(dir, "snap")}).statePath(index)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A file already at the next snapshot's state path (planted, or left by a
// peer's transfer) is never taken for the state by its name.
func TestStrayFileAtTheStatePathIsSetAside(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Save(hardState(1, 10), entries(1, 1, 10), nil); err != nil {
		t.Fatal(err)
	}
	path := statePathIn(dir, 10)
	if err := os.WriteFile(path, []byte("planted"), 0o600); err != nil {
		t.Fatal(err)
	}
	cs := &raftpb.ConfState{Voters: []uint64{1}}
	size, err := s.CreateSnapshot(10, 0, cs, []byte("meta@10"), writeString("state@10"))
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len("state@10")) {
		t.Fatalf("size %d", size)
	}
	if got := mustRead(t, path); got != "state@10" {
		t.Fatalf("state file holds %q", got)
	}
	if got := mustRead(t, path+".broken"); got != "planted" {
		t.Fatalf("set-aside file holds %q", got)
	}
	// The snapshot's checksum is that of the file: it reads back whole,
	// now and after a restart.
	snap, err := s.Storage().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, state := readSnapshot(t, s, snap); state != "state@10" {
		t.Fatalf("state %q", state)
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	if got := s.Snapshot().GetMetadata().GetIndex(); got != 10 {
		t.Fatalf("restored snapshot %d, want 10", got)
	}
	if _, state := readSnapshot(t, s, s.Snapshot()); state != "state@10" {
		t.Fatalf("state %q", state)
	}
}

// The same bytes already in place (a crash after the state file was
// written, before its snapshot) are kept without a copy set aside.
func TestSameStateFileInPlaceIsKept(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close()
	if err := s.Save(hardState(1, 10), entries(1, 1, 10), nil); err != nil {
		t.Fatal(err)
	}
	path := statePathIn(dir, 10)
	if err := os.WriteFile(path, []byte("state@10"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(10, 0, &raftpb.ConfState{Voters: []uint64{1}}, nil, writeString("state@10")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".broken"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a matching file was set aside: %v", err)
	}
	if got := mustRead(t, path); got != "state@10" {
		t.Fatalf("state file holds %q", got)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "snap", "*"+tempStateSuffix+"*")); len(tmps) != 0 {
		t.Fatalf("temporary files left: %v", tmps)
	}
}

// rafthttp keeps a file already at a received snapshot's state path, so a
// stray one there must not stop the node for good: it is set aside, the
// snapshot refused as unusable, and the next copy the leader sends works.
func TestReceivedSnapshotWithAWrongStateFile(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Save(hardState(1, 3), entries(1, 1, 3), nil); err != nil {
		t.Fatal(err)
	}
	path := statePathIn(dir, 50)
	if err := os.WriteFile(path, []byte("stray"), 0o600); err != nil {
		t.Fatal(err)
	}
	incoming := received(t, s, 50, "meta@50", "state@50") // the stray file stays
	if got := mustRead(t, path); got != "stray" {
		t.Fatalf("the test's premise: rafthttp's Snapshotter replaced the file (%q)", got)
	}

	// Checked as the message arrives, before raft steps it.
	if err := s.CheckReceivedSnapshot(incoming); !errors.Is(err, ErrSnapshotUnusable) {
		t.Fatalf("err = %v, want ErrSnapshotUnusable", err)
	}
	if got := mustRead(t, path+".broken"); got != "stray" {
		t.Fatalf("set-aside file holds %q", got)
	}
	// No file at all is unusable too, with nothing to set aside.
	if err := s.CheckReceivedSnapshot(incoming); !errors.Is(err, ErrSnapshotUnusable) {
		t.Fatalf("missing state file: err = %v, want ErrSnapshotUnusable", err)
	}

	// Save checks again: a wrong file there is set aside, nothing stored.
	if err := os.WriteFile(path, []byte("stray again"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(hardState(2, 50), nil, incoming); !errors.Is(err, ErrSnapshotUnusable) {
		t.Fatalf("Save: err = %v, want ErrSnapshotUnusable", err)
	}
	if got := mustRead(t, path+".broken"); got != "stray again" {
		t.Fatalf("set-aside file holds %q", got)
	}
	s.Close()

	// Restarted (Save's error stops the node), the snapshot comes again.
	s = mustOpen(t, dir)
	incoming = received(t, s, 50, "meta@50", "state@50")
	if err := s.CheckReceivedSnapshot(incoming); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(hardState(2, 50), nil, incoming); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	if meta, state := readSnapshot(t, s, s.Snapshot()); meta != "meta@50" || state != "state@50" {
		t.Fatalf("snapshot holds %q and %q", meta, state)
	}
}

// A snapshot that carries its state inline has no file to check.
func TestReceivedInlineSnapshotNeedsNoStateFile(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	snap := &raftpb.Snapshot{Data: []byte("old format"), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(1))}}
	if err := s.CheckReceivedSnapshot(snap); err != nil {
		t.Fatal(err)
	}
}

func TestMissingWALWithSnapshotsRefusesToStart(t *testing.T) {
	src := t.TempDir()
	s := mustOpen(t, src)
	if err := s.Save(hardState(1, 10), entries(1, 1, 10), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(10, 0, &raftpb.ConfState{Voters: []uint64{1}}, nil, writeString("state@10")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	snapFiles, _ := filepath.Glob(filepath.Join(src, "snap", "*.snap"))
	if len(snapFiles) != 1 {
		t.Fatalf("snapshot files %v", snapFiles)
	}

	cases := map[string]func(dir string) error{
		"wal gone": func(dir string) error { return os.RemoveAll(filepath.Join(dir, "wal")) },
		"wal empty": func(dir string) error {
			if err := os.RemoveAll(filepath.Join(dir, "wal")); err != nil {
				return err
			}
			return os.Mkdir(filepath.Join(dir, "wal"), 0o700)
		},
		"wal gone, only a state file left": func(dir string) error {
			if err := os.RemoveAll(filepath.Join(dir, "wal")); err != nil {
				return err
			}
			return os.Remove(filepath.Join(dir, "snap", filepath.Base(snapFiles[0])))
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			if err := damage(dir); err != nil {
				t.Fatal(err)
			}
			_, err := Open(zaptest.NewLogger(t), dir, 1, notCalled(t))
			if !errors.Is(err, ErrMissingWAL) {
				t.Fatalf("err = %v, want ErrMissingWAL", err)
			}
			for _, want := range []string{"restore", "wipe the whole data dir", "new id"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not say %q", err, want)
				}
			}
			if names, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal")); len(names) != 0 {
				t.Fatalf("a WAL was created: %v", names)
			}
		})
	}
}

// A snapshot dir holding only what was set aside or half written is no
// sign of a lost log.
func TestFreshStartBesideSetAsideFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "snap"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"0000000000000001-000000000000000a.snap.broken", "000000000000000a.snap.db.broken", "tmp123"} {
		if err := os.WriteFile(filepath.Join(dir, "snap", name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := mustOpen(t, dir)
	s.Close()
}

// A state file a crash left half written is removed at the next start.
func TestHalfWrittenStateFileIsRemovedOnOpen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	s.Close()
	tmp := filepath.Join(dir, "snap", "000000000000000a"+tempStateSuffix+"12345")
	if err := os.WriteFile(tmp, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("half-written state file still there: %v", err)
	}
}
