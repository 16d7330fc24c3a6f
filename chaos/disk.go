package chaos

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Disk faults: a torn WAL tail and a flipped bit in a WAL or a snapshot,
// and the helpers that read and damage a node's files.

// readLast reads the newest file with ext in dir, and where its data ends.
func readLast(dir, ext string) (path string, b []byte, end int, err error) {
	if path, b, err = readNewest(dir, ext); err != nil {
		return "", nil, 0, err
	}
	return path, b, dataEnd(b), nil
}

// readNewest reads the newest file with ext in dir.
func readNewest(dir, ext string) (string, []byte, error) {
	path, err := lastFile(dir, ext)
	if err != nil {
		return "", nil, err
	}
	b, err := os.ReadFile(path)
	return path, b, err
}

func lastFile(dir, ext string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil || len(m) == 0 {
		return "", fmt.Errorf("chaos: no %s file in %s", ext, dir)
	}
	sort.Strings(m)
	return m[len(m)-1], nil
}

// dataEnd is the offset just past the last nonzero byte (WAL files are
// preallocated with zeros). The zeros are skipped a block at a time: byte
// by byte, 64 MiB of them take seconds under the race detector.
func dataEnd(b []byte) int {
	end := len(b)
	for end >= len(zeroBlock) && bytes.Equal(b[end-len(zeroBlock):end], zeroBlock[:]) {
		end -= len(zeroBlock)
	}
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return end
}

var zeroBlock [64 << 10]byte

// tornTail cuts the end of a follower's last WAL record, as a power loss
// in the middle of a write would, and requires it to repair and rejoin.
// A write can only be torn if it never completed, so it was never
// acknowledged: to keep that true, the follower's outgoing links are cut
// first (it goes on receiving and writing entries, but no ack leaves), it
// is killed while they are cut, and only bytes written after the cut are
// torn. Tearing an acknowledged record would be a lost fsync, which raft
// cannot survive (tocommit out of range). If nothing was written since
// the cut (traffic stopped with the run), there is nothing to tear.
func (n *nemesis) tornTail(ctx context.Context) error {
	id, err := n.follower(ctx)
	if err != nil {
		return err
	}
	nd := n.c.Node(id)
	dir := filepath.Join(nd.DataDir, "wal")
	for _, o := range n.ids() {
		if o != id {
			n.c.Net.Set(Link{id, o}, LinkRule{Cut: true})
		}
	}
	cutPath, cutData, err := readNewest(dir, ".wal")
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // unacknowledged writes pile up
	if err := n.c.Kill(id); err != nil {
		return err
	}
	n.c.Net.Heal()
	path, b, err := readNewest(dir, ".wal")
	if err != nil {
		return err
	}
	end, since := frameEnd(b), 0
	if path == cutPath {
		since = frameEnd(cutData)
	}
	if end <= since {
		n.lg.Info("nothing written since the cut: no WAL tail to tear", zap.Uint64("node", id))
	} else {
		cut := 1 + n.rng.IntN(min(12, end-since))
		if err := os.Truncate(path, int64(end-cut)); err != nil {
			return err
		}
		n.lg.Info("tore WAL tail", zap.Uint64("node", id), zap.String("file", filepath.Base(path)), zap.Int("bytes", cut))
	}
	logStart := fileSize(nd.LogPath)
	if err := n.c.Start(ctx, id); err != nil {
		n.problem("node %d did not restart after a torn WAL tail: %v", id, err)
		return nil
	}
	if logHasSince(nd.LogPath, logStart, "repaired torn WAL tail") {
		n.stats.Repairs++
	}
	n.wait(n.hold)
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logHasSince reports whether s appears in path after offset from. It
// reads only what follows from (the step-down check polls it).
func logHasSince(path string, from int64, s string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, from, math.MaxInt64-from))
	return err == nil && strings.Contains(string(b), s)
}

// corrupt kills a follower and flips one bit inside the data of a WAL
// segment or the newest snapshot. A damaged WAL must make the node refuse
// to start; a damaged snapshot may instead be skipped for an older one the
// WAL also names (the final state comparison then proves it harmless).
// Then the original files are put back, as an operator restoring the disk
// would, and the node restarts. Once the backup exists it is put back on
// every path out, so no damage outlives the fault.
func (n *nemesis) corrupt(ctx context.Context, sub, ext string) (err error) {
	id, err := n.follower(ctx)
	if err != nil {
		return err
	}
	if err := n.c.Kill(id); err != nil {
		return err
	}
	nd := n.c.Node(id)
	dir := filepath.Join(nd.DataDir, sub)
	backup := dir + ".bak"
	os.RemoveAll(backup)
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
		return fmt.Errorf("chaos: back up %s: %w", dir, err)
	}
	restored := false
	defer func() {
		if !restored { // the node is left down; healing starts it
			err = errors.Join(err, n.c.Kill(id), restore(dir, backup))
		}
	}()
	path, off, err := n.flip(id, dir, sub, ext)
	if err != nil {
		return err
	}
	logStart := fileSize(nd.LogPath)
	startErr := n.c.Start(ctx, id)
	switch {
	case startErr != nil && errors.Is(startErr, ErrExited):
		n.stats.Refusals++
	case startErr != nil:
		return startErr
	case sub == "wal" && logHasSince(nd.LogPath, logStart, "repaired torn WAL tail"):
		// Damage before intact records was cut off as if it were a torn
		// tail: acknowledged entries lost.
		n.problem("node %d repaired away a bit flipped at offset %d of %s", id, off, filepath.Base(path))
	case sub == "wal":
		// The WAL still decoded whole: the bit was one no reader uses
		// (say, above 32 bits in a CRC's varint). Harmless.
		n.stats.HarmlessFlips++
	default:
		n.stats.SnapFallbacks++
	}
	if err := n.c.Kill(id); err != nil {
		return err
	}
	restored = true
	if err := restore(dir, backup); err != nil {
		return err
	}
	n.wait(n.hold / 2)
	return n.c.Start(ctx, id)
}

// flip flips one bit in the middle of the data of the newest ext file in
// node id's dir: clear of the file header and the last record, and in a WAL
// on a byte its CRCs or framing cover.
func (n *nemesis) flip(id uint64, dir, sub, ext string) (path string, off int, err error) {
	path, b, end, err := readLast(dir, ext)
	if err != nil {
		return "", 0, err
	}
	off = end/4 + n.rng.IntN(max(1, end/2))
	if sub == "wal" {
		off = n.walByte(b, off)
	}
	b[off] ^= 1 << n.rng.IntN(8)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", 0, err
	}
	n.lg.Info("flipped a bit", zap.Uint64("node", id), zap.String("file", filepath.Base(path)), zap.Int("offset", off))
	return path, off, nil
}

// restore puts a backed-up data subdir back in place, dropping what the
// node set aside (*.broken) while it ran on the damaged copy.
func restore(dir, backup string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("chaos: restore %s: %w", dir, err)
	}
	if err := os.Rename(backup, dir); err != nil {
		return fmt.Errorf("chaos: restore %s: %w", dir, err)
	}
	for _, f := range mustGlob(filepath.Join(dir, "*.broken")) {
		os.Remove(f)
	}
	return nil
}

func mustGlob(p string) []string {
	m, _ := filepath.Glob(p)
	return m
}

// frames calls fn with the start, record length and end of each complete
// frame of an etcd WAL file, in order, until fn returns false. A frame is
// an 8-byte length field (its low 7 bytes the record's length; when its
// top bit is set, its top byte's low 3 bits the padding), the record, then
// the padding to 8 bytes. A zero length is the end of the data.
func frames(b []byte, fn func(start, recBytes, end int) bool) {
	for pos := 0; pos+8 <= len(b); {
		lenField := int64(binary.LittleEndian.Uint64(b[pos:]))
		recBytes := int(uint64(lenField) &^ (uint64(0xff) << 56))
		pad := 0
		if lenField < 0 {
			pad = int((uint64(lenField) >> 56) & 0x7)
		}
		next := pos + 8 + recBytes + pad
		if lenField == 0 || next > len(b) || !fn(pos, recBytes, next) {
			return
		}
		pos = next
	}
}

// frameEnd is where the last complete frame of a WAL file ends.
func frameEnd(b []byte) int {
	end := 0
	frames(b, func(_, _, e int) bool { end = e; return true })
	return end
}

// walByte moves off to a byte the WAL's CRCs or framing cover: in the
// frame holding off, its length's low 7 bytes or its record, never its
// padding (etcd pads frames to 8 bytes, and a flipped padding bit is
// rightly harmless).
func (n *nemesis) walByte(b []byte, off int) int {
	out := off
	frames(b, func(pos, recBytes, next int) bool {
		if off >= next {
			return true
		}
		// Skip the length's top byte: etcd reads only its top bit and
		// low 3 bits (the padding), so a flip there can be harmless.
		k := n.rng.IntN(7 + recBytes)
		if k >= 7 {
			k++
		}
		out = pos + k
		return false
	})
	return out
}
