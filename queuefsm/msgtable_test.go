package queuefsm

import (
	"math/rand/v2"
	"testing"
)

// The table agrees with a map under random adds, removes and replaces,
// from the front (FIFO) and anywhere (acks out of order), through many
// squeezes of its holes; its view lists exactly the stored messages in id
// order.
func TestMsgTableMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tb msgTable
	model := map[uint64]*msg{}
	var next uint64
	for step := range 200000 {
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
				c := &msg{id: id, deliveries: uint64(step)}
				tb.replace(c)
				model[id] = c
			}
		}
		if step%997 == 0 || step == 199999 {
			if tb.len() != len(model) {
				t.Fatalf("step %d: len %d, model %d", step, tb.len(), len(model))
			}
			var last uint64
			seen := 0
			for _, s := range tb.view() {
				if s.m == nil {
					continue
				}
				if s.id <= last || model[s.id] != s.m || s.m.id != s.id {
					t.Fatalf("step %d: view has %d (after %d) not matching the model", step, s.id, last)
				}
				last, seen = s.id, seen+1
			}
			if seen != len(model) {
				t.Fatalf("step %d: view lists %d, model %d", step, seen, len(model))
			}
			for id := uint64(1); id <= next; id += 1 + uint64(rng.IntN(50)) {
				if tb.get(id) != model[id] {
					t.Fatalf("step %d: get(%d) differs from the model", step, id)
				}
			}
			if holes := len(tb.slots) - tb.n; holes > 64 && holes > tb.n {
				t.Fatalf("step %d: %d holes for %d messages", step, holes, tb.n)
			}
		}
	}
}
