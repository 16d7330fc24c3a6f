package chaos

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

func prefix(ops []Op, T time.Duration) []Op {
	var out []Op
	for _, o := range ops {
		if o.Call >= T {
			continue
		}
		if o.Return > T && o.Outcome != Fail {
			o.Outcome = Unknown
			if o.Kind == "dequeue" {
				o.Value = ""
			}
		}
		out = append(out, o)
	}
	return out
}

func TestDbgHistory(t *testing.T) {
	b, err := os.ReadFile(os.Getenv("HIST"))
	if err != nil {
		t.Skip()
	}
	var ops []Op
	json.Unmarshal(b, &ops)
	var qo []Op
	for _, o := range ops {
		if o.Queue == os.Getenv("Q") {
			qo = append(qo, o)
		}
	}
	lo, hi := time.Duration(0), 30*time.Second
	for hi-lo > time.Millisecond {
		mid := (lo + hi) / 2
		r := Check(prefix(qo, mid), 30*time.Second)
		if r.Linearizable == "no" {
			hi = mid
		} else {
			lo = mid
		}
	}
	t.Logf("first non-linearizable prefix ends at %v", hi)
}
