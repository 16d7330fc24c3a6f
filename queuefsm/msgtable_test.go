package queuefsm

import (
	"maps"
	"math/rand/v2"
	"testing"
)

// The table agrees with a map under random adds, removes and replaces,
// from the front (FIFO) and anywhere (acks out of order), through many
// squeezes of its holes; its view lists exactly the stored messages in id
// order, and a shared view keeps listing what the table held when it was
// taken, however the table changed since.
func TestMsgTableMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tb msgTable
	model := map[uint64]*msg{}
	var next uint64
	var shared tableView
	var sharedModel map[uint64]*msg
	for step := range 200000 {
		if step%5003 == 0 {
			if shared != nil {
				checkView(t, step, shared, sharedModel)
			}
			shared, sharedModel = tb.view(true), maps.Clone(model)
		}
		switch op := rng.IntN(10); {
		case op < 4:
			next += 1 + uint64(rng.IntN(3))
			m := &msg{id: next}
			tb.add(m)
			model[m.id] = m
		case op < 6 && next > 0: // remove near the front
			id := next - uint64(min(int(next-1), len(model)+rng.IntN(4)))
			tb.remove(id)
			delete(model, id)
		case op < 9 && next > 0: // remove anywhere, often missing
			id := 1 + uint64(rng.IntN(int(next)))
			tb.remove(id)
			delete(model, id)
		case next > 0:
			id := 1 + uint64(rng.IntN(int(next)))
			if model[id] != nil {
				c := &msg{id: id, deliveries: uint32(step)}
				tb.replace(c)
				model[id] = c
			}
		}
		if step%997 == 0 || step == 199999 {
			if tb.len() != len(model) {
				t.Fatalf("step %d: len %d, model %d", step, tb.len(), len(model))
			}
			checkView(t, step, tb.view(false), model)
			for id := uint64(1); id <= next; id += 1 + uint64(rng.IntN(50)) {
				if tb.get(id) != model[id] {
					t.Fatalf("step %d: get(%d) differs from the model", step, id)
				}
			}
			for _, c := range tb.chunks {
				if holes := len(c.slots) - c.n; holes > 64 && holes > c.n || c.n == 0 || len(c.slots) > chunkSize {
					t.Fatalf("step %d: a chunk of %d slots has %d holes for %d messages", step, len(c.slots), holes, c.n)
				}
			}
		}
	}
}

// checkView fails unless v lists exactly model's messages, in id order.
func checkView(t *testing.T, step int, v tableView, model map[uint64]*msg) {
	t.Helper()
	var last uint64
	seen := 0
	v.each(func(m *msg) {
		if m.id <= last || model[m.id] != m {
			t.Fatalf("step %d: view has %d (after %d) not matching the model", step, m.id, last)
		}
		last, seen = m.id, seen+1
	})
	if seen != len(model) {
		t.Fatalf("step %d: view lists %d, model %d", step, seen, len(model))
	}
}
