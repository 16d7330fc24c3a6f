package main

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"-targets", "http://a,http://b", "-c", "2,8", "-n", "10", "-batch", "50"})
	if err != nil || len(o.targets) != 2 || len(o.concurrency) != 2 || o.concurrency[1] != 8 || o.batch != 50 {
		t.Fatalf("parsed %+v, %v", o, err)
	}
	for _, bad := range [][]string{{"-c", "0"}, {"-c", "x"}, {"-batch", "1001"}, {"-n", "0"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// run counts what moved and what failed, and stops at the total or when
// a dequeue phase finds nothing left.
func TestRun(t *testing.T) {
	var calls atomic.Int64
	r := runPlain("x", 4, 100, 10, func(cl, i int) (int, error) {
		if calls.Add(1)%5 == 0 {
			return 0, errors.New("boom")
		}
		return 10, nil
	})
	if r.Messages+int(r.Errors)*10 != 100 || r.Errors != 2 || r.MsgsPerSec <= 0 {
		t.Fatalf("result %+v", r)
	}
	left := atomic.Int64{}
	left.Store(7)
	r = runPlain("drain", 3, 1000, 1, func(cl, i int) (int, error) {
		if left.Add(-1) < 0 {
			return 0, nil
		}
		return 1, nil
	})
	if r.Messages != 7 {
		t.Fatalf("drain moved %d, want 7", r.Messages)
	}
}
