package main

import (
	"strings"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"--faults", "kill-leader,torn-tail", "--nodes", "5", "--seed", "7"})
	if err != nil || len(o.faults) != 2 || o.nodes != 5 || o.seed != 7 {
		t.Fatalf("parsed %+v, %v", o, err)
	}
	for _, bad := range [][]string{{"--faults", "meteor"}, {"--nodes", "4"}, {"--duration", "1s"}, {"--scenarios", "0"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := parseFlags([]string{"--faults", "meteor"}); err == nil || !strings.Contains(err.Error(), "kill-leader") {
		t.Errorf("an unknown fault should list the known ones: %v", err)
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	if got := percentile(ds, 0.5); got != "2ms" {
		t.Errorf("p50 = %s", got)
	}
	if got := percentile(ds, 0.99); got != "5ms" {
		t.Errorf("p99 = %s", got)
	}
	if got := percentile(nil, 0.5); got != "-" {
		t.Errorf("empty p50 = %s", got)
	}
}
