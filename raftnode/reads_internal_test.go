package raftnode

import "testing"

// A caller joins only a round not yet sent: callers before take share
// it; a caller after take (while the round is being asked) gets the next
// round, never the one in flight, whose answer may predate the call.
func TestReadRoundsJoinOnlyUnsent(t *testing.T) {
	r := newReadRounds()
	a, b := r.join(), r.join()
	if a != b {
		t.Fatal("two callers before a round is sent got different rounds")
	}
	if r.take() != a {
		t.Fatal("take did not send the round callers joined")
	}
	c := r.join()
	if c == a {
		t.Fatal("a caller joined the round in flight")
	}
	if r.take() != c || r.take() != nil {
		t.Fatal("the next round was not sent once, alone")
	}
	// Only an attempt of the round being asked answers it, once.
	r.ask(7)
	r.answer(8, 100)
	r.answer(7, 101)
	r.answer(7, 102)
	if got := <-r.got; got != 101 || len(r.got) != 0 {
		t.Fatalf("answered %d, %d more", got, len(r.got))
	}
}
