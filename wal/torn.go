package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"

	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"google.golang.org/protobuf/proto"
)

// ErrCorrupt: the WAL is damaged somewhere other than its last record, so
// repairing it would silently drop records that were acknowledged.
var ErrCorrupt = errors.New("wal: corrupt")

// etcd's record types (storage/wal): metadata, entry, state, crc, snapshot.
const (
	recMin = 1
	recCRC = 4
	recMax = 5
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// frame is one decoded WAL frame.
type frame struct {
	rec  *walpb.Record
	next int64 // offset of the following frame
}

// readFrame decodes the frame at off, or returns nil if there is none
// there (zeros, a length past the end, or bytes that are not a record).
func readFrame(b []byte, off int64) *frame {
	if off+8 > int64(len(b)) {
		return nil
	}
	lenField := int64(binary.LittleEndian.Uint64(b[off:]))
	if lenField == 0 {
		return nil
	}
	// etcd's frame size: the low 56 bits are the record length; a set top
	// bit says the low 3 bits of the top byte are padding.
	recBytes := int64(uint64(lenField) &^ (uint64(0xff) << 56))
	var pad int64
	if lenField < 0 {
		pad = int64((uint64(lenField) >> 56) & 0x7)
	}
	end := off + 8 + recBytes + pad
	if recBytes <= 0 || end > int64(len(b)) || end < off {
		return nil
	}
	rec := &walpb.Record{}
	if err := proto.Unmarshal(b[off+8:off+8+recBytes], rec); err != nil {
		return nil
	}
	if t := rec.GetType(); t < recMin || t > recMax {
		return nil
	}
	return &frame{rec: rec, next: end}
}

// checkDamage tells a torn last record, which is safe to cut off, from
// damage in the middle of the log, which is not. etcd's reader cannot: a
// damaged length field reads as an unexpected EOF (which Repair truncates)
// or lands on zeros (which it takes for the end and zero-fills to the end
// of the file), dropping acknowledged records either way. It finds the
// first frame of the last segment that fails to decode or to match the CRC
// chain, then looks past it for two consecutive frames whose CRCs chain.
// Finding them means records were written after the damaged one: refuse.
// Any damaged frame in an earlier segment is refused outright. A torn
// write that left a zero gap before intact sectors is refused too: safe,
// at the cost of a node that an operator must replace after such a power
// loss.
func checkDamage(walDir string) error {
	names, err := filepath.Glob(filepath.Join(walDir, "*.wal"))
	if err != nil || len(names) == 0 {
		return fmt.Errorf("wal: list segments in %s: %v", walDir, err)
	}
	sort.Strings(names)
	for i, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("wal: read %s: %w", name, err)
		}
		bad, ok := firstBadFrame(b)
		if ok {
			continue
		}
		if i < len(names)-1 {
			return fmt.Errorf("%w: damaged record at offset %d of %s, which is not the last segment", ErrCorrupt, bad, filepath.Base(name))
		}
		if at, found := chainedFramesAfter(b, bad); found {
			return fmt.Errorf("%w: damaged record at offset %d of %s is followed by valid records (at %d): not a torn write",
				ErrCorrupt, bad, filepath.Base(name), at)
		}
	}
	return nil
}

// firstBadFrame walks the segment's frames along the CRC chain. It returns
// ok when every frame up to the zero-filled end is valid; otherwise the
// offset of the first bad one. A frame that is not there at all (a length
// of zero or past the end) ends the walk as well.
func firstBadFrame(b []byte) (int64, bool) {
	var off int64
	var crc uint32
	for off+8 <= int64(len(b)) {
		if binary.LittleEndian.Uint64(b[off:]) == 0 {
			return off, allZero(b[off:])
		}
		f := readFrame(b, off)
		if f == nil {
			return off, false
		}
		if f.rec.GetType() == recCRC {
			crc = f.rec.GetCrc()
		} else {
			crc = crc32.Update(crc, crcTable, f.rec.GetData())
			if f.rec.GetCrc() != crc {
				return off, false
			}
		}
		off = f.next
	}
	return off, true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// chainedFramesAfter looks, from the damaged frame at bad on, for a frame
// whose successor's CRC continues its own: proof of intact records beyond
// the damage. When the damaged frame's length field is what broke, its
// record is still in place: every later frame is tried as its successor,
// with the record read as the bytes in between.
func chainedFramesAfter(b []byte, bad int64) (int64, bool) {
	for off := bad + 8; off+8 <= int64(len(b)); off += 8 {
		g := readFrame(b, off)
		if g == nil || g.rec.GetType() == recCRC {
			continue
		}
		if chains(b, g) {
			return off, true
		}
		for pad := int64(0); pad < 8; pad++ {
			rec := &walpb.Record{}
			if end := off - pad; end > bad+8 && proto.Unmarshal(b[bad+8:end], rec) == nil &&
				crc32.Update(rec.GetCrc(), crcTable, g.rec.GetData()) == g.rec.GetCrc() {
				return off, true
			}
		}
	}
	return 0, false
}

// chains reports whether the frame after f continues f's CRC.
func chains(b []byte, f *frame) bool {
	g := readFrame(b, f.next)
	return g != nil && g.rec.GetType() != recCRC &&
		crc32.Update(f.rec.GetCrc(), crcTable, g.rec.GetData()) == g.rec.GetCrc()
}
