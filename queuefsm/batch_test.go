package queuefsm

import (
	"fmt"
	"testing"
)

func TestBatchAndPopMany(t *testing.T) {
	c := newClock(t)
	c.put(1, "q", "first")
	items := []BatchItem{{ContentType: "text/plain", Body: "a"}, {Body: "b"}, {Body: "c"}}
	r, ok := c.at(2, Command{Op: OpBatch, Queue: "q", Items: items}).(BatchResult)
	if !ok || fmt.Sprint(r.IDs) != "[2 3 4]" {
		t.Fatalf("batch = %+v", r)
	}
	if res := c.at(2, Command{Op: OpBatch, Queue: "q"}); !errIs(res, ErrInvalidArg) {
		t.Fatalf("empty batch = %v", res)
	}
	p, ok := c.at(3, Command{Op: OpPopMany, Queue: "q", Max: 3}).(PopManyResult)
	if !ok || len(p.Messages) != 3 || string(p.Messages[0].Body) != "first" || string(p.Messages[2].Body) != "b" || p.Messages[1].ContentType != "text/plain" {
		t.Fatalf("pop 3 = %+v", p)
	}
	p = c.at(4, Command{Op: OpPopMany, Queue: "q", Max: 10}).(PopManyResult)
	if len(p.Messages) != 1 || string(p.Messages[0].Body) != "c" {
		t.Fatalf("pop the rest = %+v", p)
	}
	if res := c.at(5, Command{Op: OpPopMany, Queue: "q", Max: MaxBatch + 1}); !errIs(res, ErrInvalidArg) {
		t.Fatalf("pop too many = %v", res)
	}
	tooMany := Command{Op: OpBatch, Queue: "q", Items: make([]BatchItem, MaxBatch+1)}.Encode()
	if res := c.f.Apply(99, tooMany); !errIs(res, ErrBadCommand) {
		t.Fatalf("oversized batch = %v", res)
	}
}

func TestQueueOf(t *testing.T) {
	for _, c := range []struct {
		cmd   []byte
		queue string
		tick  bool
	}{
		{Command{Op: OpLease, Time: 5, Queue: "jobs", TTL: 1}.Encode(), "jobs", false},
		{Command{Op: OpTick, Time: 5}.Encode(), "", true},
		{encodeV1ForTest("old", "x"), "old", false},
		{[]byte{9, 9}, "", false},
	} {
		if q, tick := QueueOf(c.cmd); q != c.queue || tick != c.tick {
			t.Errorf("QueueOf(% x) = %q %v, want %q %v", c.cmd, q, tick, c.queue, c.tick)
		}
	}
}

// encodeV1ForTest writes the first command format.
func encodeV1ForTest(queue, body string) []byte {
	b := []byte{commandV1, byte(OpEnqueue)}
	b = appendString(b, queue)
	b = appendString(b, "")
	return append(b, body...)
}
