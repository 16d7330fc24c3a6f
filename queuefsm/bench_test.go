package queuefsm

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"testing"
)

var body256 = bytes.Repeat([]byte("x"), 256)

// BenchmarkEncodeEnqueue: a 256-byte enqueue command.
func BenchmarkEncodeEnqueue(b *testing.B) {
	c := Command{Op: OpEnqueue, Time: 1700000000000, Queue: "jobs", ContentType: "text/plain", Body: body256}
	b.ReportAllocs()
	for b.Loop() {
		c.Encode()
	}
}

// BenchmarkApplyEnqueueDequeue: one enqueue and one pop of 256 bytes,
// decoding included.
func BenchmarkApplyEnqueueDequeue(b *testing.B) {
	f := New()
	enq := Command{Op: OpEnqueue, Time: 1700000000000, Queue: "jobs", Body: body256}.Encode()
	deq := Command{Op: OpDequeue, Time: 1700000000000, Queue: "jobs"}.Encode()
	applyPairs(b, f, enq, deq)
}

// applyPairs applies first then second, once per iteration.
func applyPairs(b *testing.B, f *FSM, first, second []byte) {
	b.ReportAllocs()
	var i uint64
	for b.Loop() {
		i += 2
		f.Apply(i, first)
		f.Apply(i+1, second)
	}
}

// BenchmarkApplyBatch100: a batch of 100 256-byte messages, then a pop of
// 100.
func BenchmarkApplyBatch100(b *testing.B) {
	f := New()
	items := make([]BatchItem, 100)
	for i := range items {
		items[i] = BatchItem{Body: string(body256)}
	}
	batch := Command{Op: OpBatch, Time: 1700000000000, Queue: "jobs", Items: items}.Encode()
	pop := Command{Op: OpPopMany, Time: 1700000000000, Queue: "jobs", Max: 100}.Encode()
	applyPairs(b, f, batch, pop)
}

// BenchmarkCapture1M: the part of a snapshot that holds up the Ready loop,
// with a million 256-byte messages queued. The write, which runs in the
// background, is BenchmarkCaptureWrite1M.
func BenchmarkCapture1M(b *testing.B) {
	f := millionQueued(b)
	for b.Loop() {
		f.Capture()
	}
}

// BenchmarkCaptureWrite1M: encoding a million queued messages.
func BenchmarkCaptureWrite1M(b *testing.B) {
	f := millionQueued(b)
	for b.Loop() {
		if err := f.Capture()(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func millionQueued(b *testing.B) *FSM {
	f := New()
	items := make([]BatchItem, MaxBatch)
	for i := range items {
		items[i] = BatchItem{Body: string(body256)}
	}
	batch := Command{Op: OpBatch, Time: 1700000000000, Queue: "jobs", Items: items}.Encode()
	for i := range 1000 {
		f.Apply(uint64(i+1), batch)
	}
	return f
}

// BenchmarkMemoryPerMessage: the heap a stored message takes beyond its
// 256-byte body, against MessageOverhead, which is what it counts for.
func BenchmarkMemoryPerMessage(b *testing.B) {
	var per float64
	for b.Loop() {
		per = heapPer(b, 200_000, false) - float64(len(body256))
	}
	b.ReportMetric(per, "heap-B/msg")
	b.ReportMetric(MessageOverhead, "counted-B/msg")
}

// BenchmarkMemoryPerKey: the heap a remembered 16-byte idempotency key
// takes beyond its bytes, at MaxDedupeKeys and at half of it (the map's
// growth moves it), against KeyOverhead.
func BenchmarkMemoryPerKey(b *testing.B) {
	for _, n := range []int{MaxDedupeKeys / 2, MaxDedupeKeys} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = heapPer(b, n, true) - heapPer(b, n, false) - 16
			}
			b.ReportMetric(per, "heap-B/key")
			b.ReportMetric(KeyOverhead, "counted-B/key")
		})
	}
}

// heapPer is the heap that n enqueues of 256 bytes into one queue leave
// live, per enqueue, with a 16-byte key each if keyed.
func heapPer(b *testing.B, n int, keyed bool) float64 {
	cmds := make([][]byte, n)
	for i := range cmds {
		c := Command{Op: OpEnqueue, Time: 1000, Queue: "q", Body: body256}
		if keyed {
			c.IdempotencyKey = fmt.Sprintf("%016d", i)
		}
		cmds[i] = c.Encode()
	}
	f := New()
	f.Apply(0, Command{Op: OpEnqueue, Time: 1000, Queue: "q"}.Encode())
	before := liveHeap()
	for i, c := range cmds {
		if r := f.Apply(uint64(i+1), c); asErr(r) != nil {
			b.Fatal(r)
		}
	}
	after := liveHeap()
	runtime.KeepAlive(cmds)
	runtime.KeepAlive(f)
	return float64(after-before) / float64(n)
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
