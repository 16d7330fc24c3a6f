package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/raftq/raftq/queuefsm"
)

func TestWantRaised(t *testing.T) {
	const min = 1000
	for _, tc := range []struct {
		free, min   uint64
		raised, out bool
	}{
		{free: 999, min: min, raised: false, out: true},   // below: raise
		{free: 999, min: min, raised: true, out: true},    // below: keep
		{free: 1000, min: min, raised: false, out: false}, // at the threshold: not below
		{free: 1000, min: min, raised: true, out: true},   // between: keep raised
		{free: 1249, min: min, raised: true, out: true},   // between: keep raised
		{free: 1249, min: min, raised: false, out: false}, // between: keep clear
		{free: 1250, min: min, raised: true, out: false},  // back to 1.25 × min: clear
		{free: 0, min: 0, raised: true, out: false},       // disabled: clear
		{free: 1 << 62, min: 1 << 62, raised: true, out: true},
		{free: 1<<64 - 1, min: 1 << 62, raised: true, out: false}, // no overflow
	} {
		if got := wantRaised(tc.free, tc.min, tc.raised); got != tc.out {
			t.Errorf("wantRaised(free %d, min %d, raised %v) = %v, want %v", tc.free, tc.min, tc.raised, got, tc.out)
		}
	}
}

// fakeDisk is a disk alarm over a fake statfs and a fake state machine
// that records what is proposed.
type fakeDisk struct {
	free     uint64
	statErr  error
	raised   bool
	fail     error // the next proposal's error
	proposed []queuefsm.Command
}

func (f *fakeDisk) alarm(min uint64) *diskAlarm {
	return &diskAlarm{id: 3, dir: "/data", min: min, timeout: time.Second, lg: zap.NewNop(),
		free:    func(string) (uint64, error) { return f.free, f.statErr },
		raised:  func() bool { return f.raised },
		orphans: func() []uint64 { return nil },
		propose: func(_ context.Context, c queuefsm.Command) error {
			f.proposed = append(f.proposed, c)
			if err := f.fail; err != nil {
				f.fail = nil
				return err
			}
			f.raised = c.Raise
			return nil
		},
	}
}

func TestDiskAlarmRaisesAndClearsOnce(t *testing.T) {
	f := &fakeDisk{free: 5000}
	a := f.alarm(1000)
	ctx := context.Background()
	steps := []struct {
		free    uint64
		statErr error
		fail    error
		want    []bool // Raise of what this check proposes
	}{
		{free: 5000},                    // plenty: nothing
		{free: 999, want: []bool{true}}, // below: raise
		{free: 10},                      // still below, raised: nothing
		{free: 1200},                    // between: stays raised
		{statErr: errors.New("gone")},   // unreadable: nothing
		{free: 1250, fail: errors.New("no leader"), want: []bool{false}}, // clear fails
		{free: 1300, want: []bool{false}},                                // tried again, cleared
		{free: 1300},                                                     // clear: nothing
		{free: 1100},                                                     // between, clear: nothing
		{free: 900, want: []bool{true}},                                  // below again
	}
	for i, s := range steps {
		f.free, f.statErr, f.fail, f.proposed = s.free, s.statErr, s.fail, nil
		a.check(ctx)
		var got []bool
		for _, c := range f.proposed {
			if c.Op != queuefsm.OpAlarm || c.Node != 3 {
				t.Fatalf("step %d proposed %+v", i, c)
			}
			got = append(got, c.Raise)
		}
		if len(got) != len(s.want) || (len(got) == 1 && got[0] != s.want[0]) {
			t.Fatalf("step %d (free %d): proposed raise=%v, want %v", i, s.free, got, s.want)
		}
	}
}

func TestDiskAlarmDisabledClearsItsOwn(t *testing.T) {
	f := &fakeDisk{free: 0, raised: true}
	f.alarm(0).check(context.Background())
	if len(f.proposed) != 1 || f.proposed[0].Raise {
		t.Fatalf("--min-free-bytes 0 with the alarm raised proposed %+v, want one clear", f.proposed)
	}
}

func TestFreeBytes(t *testing.T) {
	if free, err := freeBytes(t.TempDir()); err != nil || free == 0 {
		t.Fatalf("freeBytes = %d, %v", free, err)
	}
	if _, err := freeBytes("/no/such/dir"); err == nil {
		t.Fatal("statfs of a missing dir did not fail")
	}
}

func TestAlarmAndConnFlags(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.minFreeBytes != 256<<20 || c.maxClientConns != 4096 {
		t.Fatalf("defaults: min free %d, max conns %d", c.minFreeBytes, c.maxClientConns)
	}
	c, err = parseFlags(strings.Fields("--min-free-bytes 0 --max-client-conns 7"))
	if err != nil || c.minFreeBytes != 0 || c.maxClientConns != 7 {
		t.Fatalf("parsed %+v, %v", c, err)
	}
	for _, bad := range []string{"--max-client-conns 0", "--min-free-bytes -1"} {
		if _, err := parseFlags(strings.Fields(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The connection cap: past it a connection is not accepted (it waits in
// the backlog) until an open one closes; Close ends a waiting Accept.
func TestLimitListenerCapsOpenConns(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(inner, 2)
	accepted := make(chan net.Conn, 10)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	var open []net.Conn
	for range 2 {
		select {
		case c := <-accepted:
			open = append(open, c)
		case <-time.After(30 * time.Second):
			t.Fatal("the first two connections were not accepted")
		}
	}
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted past the cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	open[0].Close()
	open[0].Close() // a second close gives back nothing more
	select {
	case c := <-accepted:
		open = append(open, c)
	case <-time.After(30 * time.Second):
		t.Fatal("the third connection was not accepted after one closed")
	}
	if len(l.slots) != 2 {
		t.Fatalf("%d slots held, want 2", len(l.slots))
	}
	l.Close()
	select {
	case err := <-acceptErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not end a waiting Accept")
	}
	for _, c := range open {
		c.Close()
	}
}

// The leader clears the alarms of nodes no longer members; a failed
// clear is tried again at the next round.
func TestDiskAlarmClearsRemovedNodesAlarms(t *testing.T) {
	f := &fakeDisk{free: 5000}
	a := f.alarm(1000)
	orphans := map[uint64]bool{4: true, 7: true}
	a.orphans = func() (out []uint64) {
		for _, id := range []uint64{4, 7} {
			if orphans[id] {
				out = append(out, id)
			}
		}
		return out
	}
	a.propose = func(_ context.Context, c queuefsm.Command) error {
		f.proposed = append(f.proposed, c)
		if c.Node == 7 && f.fail != nil {
			f.fail = nil
			return errors.New("no leader")
		}
		delete(orphans, c.Node)
		return nil
	}
	f.fail = errors.New("once")
	for range 3 {
		a.clearOrphans(context.Background())
	}
	var got []uint64
	for _, c := range f.proposed {
		if c.Op != queuefsm.OpAlarm || c.Raise {
			t.Fatalf("proposed %+v", c)
		}
		got = append(got, c.Node)
	}
	if len(orphans) != 0 || len(got) != 3 || got[0] != 4 || got[1] != 7 || got[2] != 7 {
		t.Fatalf("proposed clears of %v, left %v; want 4, 7 (failed), 7", got, orphans)
	}
}
