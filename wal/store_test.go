package wal

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func entries(term, from, to uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := from; i <= to; i++ {
		out = append(out, &raftpb.Entry{Term: new(term), Index: new(i), Type: raftpb.EntryNormal.Enum(), Data: []byte(fmt.Sprint("e", i))})
	}
	return out
}

func hardState(term, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(uint64(1)), Commit: new(commit)}
}

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(zaptest.NewLogger(t), dir, 1, clusterID(testClusterID))
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}

func checkEntries(t *testing.T, s *Store, from, to uint64) {
	t.Helper()
	first, _ := s.Storage().FirstIndex()
	last, _ := s.Storage().LastIndex()
	if first != from || last != to {
		t.Fatalf("log spans %d..%d, want %d..%d", first, last, from, to)
	}
	ents, err := s.Storage().Entries(from, to+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range ents {
		if want := fmt.Sprint("e", from+uint64(i)); string(e.GetData()) != want {
			t.Fatalf("entry %d data %q, want %q", e.GetIndex(), e.GetData(), want)
		}
	}
}

func TestSaveReplayRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if s.Existed() {
		t.Fatal("fresh dir reported as existing")
	}
	if err := s.Save(hardState(1, 5), entries(1, 1, 5), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(hardState(2, 8), entries(2, 6, 8), nil); err != nil {
		t.Fatal(err)
	}
	checkEntries(t, s, 1, 8)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, dir)
	defer s.Close()
	if !s.Existed() {
		t.Fatal("reopened dir not reported as existing")
	}
	checkEntries(t, s, 1, 8)
	if hs, _, _ := s.Storage().InitialState(); hs.GetCommit() != 8 || hs.GetTerm() != 2 {
		t.Fatalf("hard state %v", hs)
	}
}

// walFile returns the path of the only WAL segment in dir.
func walFile(t *testing.T, dir string) string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(names) != 1 {
		t.Fatalf("want one WAL segment, have %v", names)
	}
	return names[0]
}

// dataEnd is the offset just past the last non-zero byte: WAL segments are
// preallocated with zeros.
func dataEnd(t *testing.T, path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return int64(end)
}

func TestTornTailIsRepaired(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Save(hardState(1, 10), entries(1, 1, 10), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(hardState(1, 12), entries(1, 11, 12), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A crash mid-write leaves the last record (the second hard state) cut.
	path := walFile(t, dir)
	if err := os.Truncate(path, dataEnd(t, path)-3); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, dir)
	defer s.Close()
	checkEntries(t, s, 1, 12) // entries before the torn record survive
	if hs, _, _ := s.Storage().InitialState(); hs.GetCommit() != 10 {
		t.Fatalf("commit after repair = %d, want 10 (the last whole hard state)", hs.GetCommit())
	}
	if _, err := os.Stat(path + ".broken"); err != nil {
		t.Fatalf("no copy of the broken segment kept: %v", err)
	}
	// The repaired log accepts new writes and replays them.
	if err := s.Save(hardState(1, 13), entries(1, 13, 13), nil); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptionInsideTheLogRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	for i := uint64(1); i <= 20; i++ {
		if err := s.Save(hardState(1, i), entries(1, i, i), nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	path := walFile(t, dir)
	b, _ := os.ReadFile(path)
	// A bit of the middle record's data, which its CRC covers (a raw
	// middle offset can land on a bit no reader uses, such as above 32
	// bits in a CRC's varint).
	var frames []int64
	for off := int64(0); readFrame(b, off) != nil; off = readFrame(b, off).next {
		frames = append(frames, off)
	}
	mid := frames[len(frames)/2]
	recBytes := int64(binary.LittleEndian.Uint64(b[mid:]) &^ (uint64(0xff) << 56))
	b[mid+8+recBytes-1] ^= 0x40 // data is a record's last field
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(zaptest.NewLogger(t), dir, 1, clusterID(testClusterID)); err == nil {
		t.Fatal("opened a WAL with a flipped bit in the middle")
	}
}

// A flipped bit anywhere before the last record must never be "repaired"
// away: etcd's reader calls a damaged length field an unexpected EOF, the
// same as a torn write, and repairing would drop acknowledged records.
// Every frame's length field and a spread of other bytes are tried; the
// store must refuse to open or else replay all 20 entries.
func TestDamageBeforeTheLastRecordIsNeverRepaired(t *testing.T) {
	src := t.TempDir()
	s := mustOpen(t, src)
	for i := uint64(1); i <= 20; i++ {
		if err := s.Save(hardState(1, i), entries(1, i, i), nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := walFile(t, src)
	end := dataEnd(t, path)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := full[:end+4096] // keep a zero tail, drop the rest of the preallocation
	var frames []int64
	for off := int64(0); ; {
		f := readFrame(orig, off)
		if f == nil {
			break
		}
		frames = append(frames, off)
		off = f.next
	}
	if len(frames) < 40 {
		t.Fatalf("walked only %d frames", len(frames))
	}
	last := frames[len(frames)-1]
	var offsets []int64
	for _, f := range frames[1 : len(frames)-1] {
		offsets = append(offsets, f, f+5, f+9)
	}
	for off := int64(0); off < last; off += 37 {
		offsets = append(offsets, off)
	}
	refused := 0
	for _, off := range offsets {
		b := append([]byte(nil), orig...)
		b[off] ^= 0x10
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "wal", filepath.Base(path)), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := Open(zap.NewNop(), dir, 1, clusterID(testClusterID))
		if err != nil {
			refused++
			continue
		}
		if li, _ := st.Storage().LastIndex(); li != 20 {
			t.Errorf("bit flipped at offset %d: opened with last index %d, want 20 or a refusal", off, li)
		}
		st.Close()
	}
	if refused == 0 {
		t.Fatal("no flipped bit was refused")
	}
	t.Logf("%d of %d damaged copies refused", refused, len(offsets))
}

func TestSnapshotPlusLaterEntriesReplay(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Save(hardState(1, 20), entries(1, 1, 20), nil); err != nil {
		t.Fatal(err)
	}
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	if _, err := s.CreateSnapshot(15, 10, cs, []byte("meta@15"), writeString("state@15")); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.Storage().FirstIndex(); first != 11 {
		t.Fatalf("memory log not compacted: first index %d, want 11", first)
	}
	if err := s.Save(hardState(1, 25), entries(1, 21, 25), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = mustOpen(t, dir)
	defer s.Close()
	snap := s.Snapshot()
	if snap.GetMetadata().GetIndex() != 15 {
		t.Fatalf("snapshot %v", snap.GetMetadata())
	}
	if meta, state := readSnapshot(t, s, snap); meta != "meta@15" || state != "state@15" {
		t.Fatalf("snapshot holds %q and %q", meta, state)
	}
	if got := snap.GetMetadata().GetConfState().GetVoters(); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("conf state voters %v", got)
	}
	checkEntries(t, s, 16, 25)
}

func TestReceivedSnapshotReplacesLog(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Save(hardState(1, 3), entries(1, 1, 3), nil); err != nil {
		t.Fatal(err)
	}
	// A leader sends a snapshot at 50 (our log was far behind): rafthttp
	// saves its state file, then raft hands over the snapshot.
	bad := received(t, s, 50, "meta@50", "state@50")
	bad.Data = encodeSnapData(8, make([]byte, 32), []byte("meta@50"))
	if err := s.Save(hardState(2, 50), nil, bad); !errors.Is(err, errStateMismatch) || !errors.Is(err, ErrSnapshotUnusable) {
		t.Fatalf("a state file that does not match: err = %v", err)
	}
	// The leader sends it again.
	incoming := received(t, s, 50, "meta@50", "state@50")
	if err := s.Save(hardState(2, 50), nil, incoming); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(hardState(2, 52), entries(2, 51, 52), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = mustOpen(t, dir)
	defer s.Close()
	if s.Snapshot().GetMetadata().GetIndex() != 50 {
		t.Fatalf("snapshot index %d", s.Snapshot().GetMetadata().GetIndex())
	}
	if meta, state := readSnapshot(t, s, s.Snapshot()); meta != "meta@50" || state != "state@50" {
		t.Fatalf("snapshot holds %q and %q", meta, state)
	}
	checkEntries(t, s, 51, 52)
}

// A snapshot whose state file was damaged on disk is set aside and the
// one before it used, with the log after it.
func TestDamagedStateFallsBackToAnOlderSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	cs := &raftpb.ConfState{Voters: []uint64{1}}
	for i := uint64(1); i <= 3; i++ {
		if err := s.Save(hardState(1, i*10), entries(1, (i-1)*10+1, i*10), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateSnapshot(i*10, 0, cs, []byte("m"), writeString(fmt.Sprint("state@", i*10))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := filepath.Join(dir, "snap", fmt.Sprintf("%016x.snap.db", 30))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[3] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	if got := s.Snapshot().GetMetadata().GetIndex(); got != 20 {
		t.Fatalf("restored snapshot %d, want 20", got)
	}
	if _, state := readSnapshot(t, s, s.Snapshot()); state != "state@20" {
		t.Fatalf("state %q", state)
	}
	checkEntries(t, s, 21, 30)
	if _, err := os.Stat(path + ".broken"); err != nil {
		t.Fatalf("damaged state not set aside: %v", err)
	}
}

// A snapshot written before state files existed carries its state inline.
func TestInlineSnapshotIsReadAsMeta(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	snap := &raftpb.Snapshot{Data: []byte("old format"), Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(1))}}
	meta, state, err := s.OpenSnapshot(snap)
	if err != nil || state != nil || string(meta) != "old format" {
		t.Fatalf("meta %q, state %v, err %v", meta, state, err)
	}
}

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	}
}

// received stands in for rafthttp: the state file first, then the message.
func received(t *testing.T, s *Store, index uint64, meta, state string) *raftpb.Snapshot {
	t.Helper()
	if _, err := s.Snapshotter().SaveDBFrom(strings.NewReader(state), index); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(state))
	return &raftpb.Snapshot{Data: encodeSnapData(int64(len(state)), sum[:], []byte(meta)), Metadata: &raftpb.SnapshotMetadata{
		Index: new(index), Term: new(uint64(2)), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}},
	}}
}

func readSnapshot(t *testing.T, s *Store, snap *raftpb.Snapshot) (meta, state string) {
	t.Helper()
	m, rc, err := s.OpenSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(m), string(b)
}

func TestDataDirOfAnotherNode(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Save(hardState(1, 1), entries(1, 1, 1), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(zaptest.NewLogger(t), dir, 2, clusterID(testClusterID)); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("err = %v, want ErrWrongNode", err)
	}
}

func TestOldFilesArePurged(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close()
	cs := &raftpb.ConfState{Voters: []uint64{1}}
	for i := uint64(1); i <= 12; i++ {
		if err := s.Save(hardState(1, i*10), entries(1, (i-1)*10+1, i*10), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateSnapshot(i*10, 0, cs, []byte("x"), writeString("y")); err != nil {
			t.Fatal(err)
		}
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snap", "*.snap"))
	states, _ := filepath.Glob(filepath.Join(dir, "snap", "*.snap.db"))
	if len(snaps) != keepFiles || len(states) != keepFiles {
		t.Fatalf("%d snapshot files and %d state files kept, want %d", len(snaps), len(states), keepFiles)
	}
}

// DiskUsage counts the WAL's files (its preallocated segment included) and
// the snapshot files.
func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close()
	if err := s.Save(hardState(1, 5), entries(1, 1, 5), nil); err != nil {
		t.Fatal(err)
	}
	walBytes, snapBytes, err := s.DiskUsage()
	if err != nil || walBytes < 64<<20 || snapBytes != 0 {
		t.Fatalf("wal %d, snap %d, %v: want a 64 MiB segment and no snapshot", walBytes, snapBytes, err)
	}
}
