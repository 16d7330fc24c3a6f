package raftnode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// A group entry decodes to its commands in order; anything else that
// claims to be one is refused (the node then stops: a damaged log).
func TestGroupEncoding(t *testing.T) {
	g := []*pendingCmd{{id: 7, cmd: []byte("a")}, {id: 8, cmd: nil}, {id: 9, cmd: bytes.Repeat([]byte("z"), 300)}}
	data := encodeGroup(g)
	if binary.BigEndian.Uint64(data) != groupMarker {
		t.Fatal("a group of three does not start with the marker")
	}
	cmds, err := decodeGroup(data[8:])
	if err != nil || len(cmds) != 3 {
		t.Fatalf("decode: %v, %d commands", err, len(cmds))
	}
	for i, c := range cmds {
		if c.id != g[i].id || !bytes.Equal(c.cmd, g[i].cmd) {
			t.Errorf("command %d: %d %q", i, c.id, c.cmd)
		}
	}
	if one := encodeGroup(g[:1]); binary.BigEndian.Uint64(one) != 7 || string(one[8:]) != "a" {
		t.Fatalf("a group of one is not a plain entry: %x", one)
	}
	body := data[8:]
	bad := map[string][]byte{
		"empty":           {},
		"count 1":         binary.AppendUvarint(nil, 1),
		"count too large": binary.AppendUvarint(nil, maxGroupCommands+1),
		"truncated":       body[:len(body)-1],
		"trailing bytes":  append(append([]byte(nil), body...), 0),
		"length past end": append(binary.AppendUvarint(nil, 2), append(binary.BigEndian.AppendUint64(nil, 1), 0xff, 0x01)...),
	}
	for name, b := range bad {
		if _, err := decodeGroup(b); !errors.Is(err, errBadGroup) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A command waits until fewer than max groups are on their way; a group
// takes everything pending (up to its caps) in order; a dropped command
// is never taken, and one taken cannot be dropped; a group counts off
// when it lands, at a leader change, or after inFlightFor.
func TestGroupsTakeDropLand(t *testing.T) {
	g := newGroups(1)
	now := time.Now()
	for id := uint64(1); id <= 3; id++ {
		if err := g.add(id, []byte(fmt.Sprint(id)), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if !g.drop(2) || g.drop(2) {
		t.Fatal("drop of a pending command")
	}
	first := g.take(now)
	if len(first) != 2 || first[0].id != 1 || first[1].id != 3 {
		t.Fatalf("first group %v", ids(first))
	}
	if g.drop(1) || g.isPending(3) {
		t.Fatal("a taken command was dropped or still pending")
	}
	g.add(4, []byte("4"), time.Time{})
	if got := g.take(now); got != nil {
		t.Fatalf("a second group went with one on its way: %v", ids(got))
	}
	g.landed(1)
	if got := g.take(now); len(got) != 1 || got[0].id != 4 {
		t.Fatalf("after landing: %v", ids(got))
	}
	g.add(5, []byte("5"), time.Time{})
	g.lost() // a leader change counts group 4 off
	if got := g.take(now); len(got) != 1 || got[0].id != 5 {
		t.Fatalf("after a leader change: %v", ids(got))
	}
	g.add(6, []byte("6"), time.Time{})
	if got := g.take(now.Add(inFlightFor / 2)); got != nil {
		t.Fatal("a group counted off early")
	}
	if got := g.take(now.Add(2 * inFlightFor)); len(got) != 1 || got[0].id != 6 {
		t.Fatalf("after inFlightFor: %v", ids(got))
	}
	if s := g.snapshot(); s.Groups != 4 || s.Commands != 5 {
		t.Fatalf("stats %+v", s)
	}
}

// Groups are capped by commands and bytes, and what may wait is bounded.
func TestGroupCaps(t *testing.T) {
	g := newGroups(2)
	for id := uint64(1); id <= maxGroupCommands+5; id++ {
		g.add(id, []byte("x"), time.Time{})
	}
	if got := g.take(time.Now()); len(got) != maxGroupCommands {
		t.Fatalf("a group of %d commands", len(got))
	}
	g = newGroups(2)
	big := bytes.Repeat([]byte("b"), maxGroupBytes/2+1)
	g.add(1, big, time.Time{})
	g.add(2, big, time.Time{})
	if got := g.take(time.Now()); len(got) != 1 {
		t.Fatalf("%d commands over %d bytes in one group", len(got), maxGroupBytes)
	}
	g = newGroups(1)
	chunk := bytes.Repeat([]byte("c"), 1<<20)
	var err error
	for id := uint64(1); err == nil && id < 100; id++ {
		err = g.add(id, chunk, time.Time{})
	}
	if !errors.Is(err, ErrTooManyRequests) {
		t.Fatalf("past %d pending bytes: %v", maxPendingBytes, err)
	}
}

func ids(g []*pendingCmd) []uint64 {
	var out []uint64
	for _, p := range g {
		out = append(out, p.id)
	}
	return out
}

// A follower's forwarded commands join the leader's pending group after
// what waits there already, all or none; a group of this node's is
// counted off wherever its first command lands (merged into the leader's
// group, it is not first there).
func TestGroupsForwardAndLandedIn(t *testing.T) {
	g := newGroups(1)
	g.add(1, []byte("own"), time.Time{})
	if !g.forward([]groupCmd{{id: 101, cmd: []byte("a")}, {id: 102, cmd: []byte("b")}}, 1) {
		t.Fatal("forwarded commands refused with room to spare")
	}
	got := g.take(time.Now())
	if !slices.Equal(ids(got), []uint64{1, 101, 102}) {
		t.Fatalf("group %v, want [1 101 102]", ids(got))
	}
	g.add(2, []byte("next"), time.Time{})
	g.landedIn([]groupCmd{{id: 7}, {id: 1}, {id: 8}}) // own group 1 landed second in another's entry
	if got := g.take(time.Now()); !slices.Equal(ids(got), []uint64{2}) {
		t.Fatalf("after landing inside another entry: %v", ids(got))
	}
	g.landedIn([]groupCmd{{id: 9}}) // not ours: group 2 is still on its way
	g.add(3, []byte("held"), time.Time{})
	if got := g.take(time.Now()); got != nil {
		t.Fatalf("a group went with one on its way: %v", ids(got))
	}

	full := newGroups(1)
	chunk := bytes.Repeat([]byte("c"), 1<<20)
	for id := uint64(1); full.add(id, chunk, time.Time{}) == nil; id++ {
	}
	before := len(full.pending)
	if full.forward([]groupCmd{{id: 500, cmd: []byte("x")}, {id: 501, cmd: chunk}}, 1) {
		t.Fatal("forwarded commands taken past maxPendingBytes")
	}
	if len(full.pending) != before || full.isPending(500) {
		t.Fatal("a refused forward left some of its commands pending")
	}
}

// Commands merged from followers go only in the term they were merged in,
// by this node leading: after a change of leader they are left out (the
// followers have answered "leader changed" or will), this node's own stay.
func TestKeepForwards(t *testing.T) {
	own1, own2 := &pendingCmd{id: 1}, &pendingCmd{id: 2}
	fwd5, fwd6 := &pendingCmd{id: 101, forwardedIn: 5}, &pendingCmd{id: 102, forwardedIn: 6}
	n := &Node{cfg: Config{ID: 1}}
	for _, c := range []struct {
		name       string
		lead, term uint64
		g, want    []*pendingCmd
	}{
		{"leading in the merge term", 1, 5, []*pendingCmd{fwd5, own1}, []*pendingCmd{fwd5, own1}},
		{"a later term", 1, 6, []*pendingCmd{fwd5, own1, fwd6, own2}, []*pendingCmd{own1, fwd6, own2}},
		{"no longer leading", 2, 6, []*pendingCmd{own1, fwd5, fwd6, own2}, []*pendingCmd{own1, own2}},
		{"only forwards, stale", 0, 7, []*pendingCmd{fwd5, fwd6}, []*pendingCmd{}},
		{"only own", 2, 7, []*pendingCmd{own1, own2}, []*pendingCmd{own1, own2}},
	} {
		n.lead.Store(c.lead)
		n.term.Store(c.term)
		if got := n.keepForwards(c.g); !slices.Equal(ids(got), ids(c.want)) {
			t.Errorf("%s: kept %v, want %v", c.name, ids(got), ids(c.want))
		}
	}
}
