package wal

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	etcdwal "go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.uber.org/zap/zaptest"
)

const testClusterID uint64 = 0xc1a55

// clusterID is a newClusterID that answers cid.
func clusterID(cid uint64) func() (uint64, error) {
	return func() (uint64, error) { return cid, nil }
}

// notCalled is a newClusterID for a dir that already holds a WAL.
func notCalled(t *testing.T) func() (uint64, error) {
	return func() (uint64, error) {
		t.Error("newClusterID called on an existing WAL")
		return 0, errors.New("not expected")
	}
}

// readMeta reads the metadata record of the WAL in dir.
func readMeta(t *testing.T, dir string) []byte {
	t.Helper()
	w, err := etcdwal.OpenForRead(zaptest.NewLogger(t), filepath.Join(dir, "wal"), &walpb.Snapshot{Index: new(uint64(0)), Term: new(uint64(0))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	meta, _, _, err := w.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return meta
}

func noWAL(t *testing.T, dir string) {
	t.Helper()
	for _, p := range []string{"wal", "wal.tmp"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it absent", p, err)
		}
	}
}

func TestClusterIDIsRecordedInTheWAL(t *testing.T) {
	dir := t.TempDir()
	calls := 0
	s, err := Open(zaptest.NewLogger(t), dir, 3, func() (uint64, error) {
		calls++
		noWAL(t, dir) // asked before anything of the WAL is on disk
		return 0xfeedface, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || s.ClusterID() != 0xfeedface {
		t.Fatalf("newClusterID called %d times, ClusterID %x", calls, s.ClusterID())
	}
	if err := s.Save(hardState(1, 1), entries(1, 1, 1), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()

	want := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 3), 0xfeedface)
	if got := readMeta(t, dir); string(got) != string(want) {
		t.Fatalf("metadata %x, want %x", got, want)
	}
	s, err = Open(zaptest.NewLogger(t), dir, 3, notCalled(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Existed() || s.ClusterID() != 0xfeedface {
		t.Fatalf("reopened: existed %v, ClusterID %x", s.Existed(), s.ClusterID())
	}
}

// A WAL created before cluster ids holds the node id alone.
func TestLegacyMetadataHasTheLegacyClusterID(t *testing.T) {
	dir := t.TempDir()
	w, err := etcdwal.Create(zaptest.NewLogger(t), filepath.Join(dir, "wal"), binary.BigEndian.AppendUint64(nil, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Save(hardState(1, 2), entries(1, 1, 2)); err != nil {
		t.Fatal(err)
	}
	w.Close()

	s, err := Open(zaptest.NewLogger(t), dir, 1, notCalled(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.ClusterID() != LegacyClusterID {
		t.Fatalf("ClusterID %x, want %x", s.ClusterID(), LegacyClusterID)
	}
	checkEntries(t, s, 1, 2)
	s.Close()
	if _, err := Open(zaptest.NewLogger(t), dir, 2, notCalled(t)); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("legacy WAL of node 1 opened as node 2: err = %v, want ErrWrongNode", err)
	}
}

func TestClusterIDErrorLeavesNoWAL(t *testing.T) {
	dir := t.TempDir()
	errPeers := errors.New("no peer answered")
	_, err := Open(zaptest.NewLogger(t), dir, 1, func() (uint64, error) { return 0, errPeers })
	if !errors.Is(err, errPeers) {
		t.Fatalf("err = %v, want it to wrap %v", err, errPeers)
	}
	noWAL(t, dir)
	for name, f := range map[string]func() (uint64, error){"nil": nil, "zero": clusterID(0)} {
		if _, err := Open(zaptest.NewLogger(t), dir, 1, f); err == nil {
			t.Fatalf("newClusterID %s: opened", name)
		}
		noWAL(t, dir)
	}
	// The next start, with peers answering, creates the WAL.
	s := mustOpen(t, dir)
	defer s.Close()
	if s.Existed() || s.ClusterID() != testClusterID {
		t.Fatalf("existed %v, ClusterID %x", s.Existed(), s.ClusterID())
	}
}

func TestUnknownMetadataRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	w, err := etcdwal.Create(zaptest.NewLogger(t), filepath.Join(dir, "wal"), []byte("12345"))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := Open(zaptest.NewLogger(t), dir, 1, notCalled(t)); err == nil {
		t.Fatal("opened a WAL with 5 bytes of metadata")
	}
	// The refused WAL was closed: it can be opened again.
	w, err = etcdwal.Open(zaptest.NewLogger(t), filepath.Join(dir, "wal"), &walpb.Snapshot{Index: new(uint64(0)), Term: new(uint64(0))})
	if err != nil {
		t.Fatalf("WAL left locked: %v", err)
	}
	w.Close()
}
