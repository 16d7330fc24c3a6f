package raftnode

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// raftLogger adapts zap to raft.Logger, which is printf-shaped.
type raftLogger struct{ *zap.SugaredLogger }

func (l raftLogger) Warning(v ...any)                 { l.Warn(v...) }
func (l raftLogger) Warningf(format string, v ...any) { l.Warnf(format, v...) }

// Fatal and Panic from raft mean an invariant broke; raft expects them not
// to return.
func (l raftLogger) Fatal(v ...any)                 { l.Panic(v...) }
func (l raftLogger) Fatalf(format string, v ...any) { l.Panic(fmt.Sprintf(format, v...)) }

// throttledCore writes entries whose message contains match at most once
// per every for each such message, and every other entry as it comes.
// rafthttp logs a refused peer of another cluster at each redial, ten
// times a second per stream: this keeps the first line and drops the
// repeats.
type throttledCore struct {
	zapcore.Core
	match string
	every time.Duration
	mu    *sync.Mutex
	last  map[string]time.Time
}

func throttle(c zapcore.Core, match string, every time.Duration) zapcore.Core {
	return &throttledCore{Core: c, match: match, every: every, mu: &sync.Mutex{}, last: map[string]time.Time{}}
}

func (c *throttledCore) With(fields []zapcore.Field) zapcore.Core {
	cc := *c
	cc.Core = c.Core.With(fields)
	return &cc
}

func (c *throttledCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if strings.Contains(e.Message, c.match) {
		c.mu.Lock()
		quiet := e.Time.Sub(c.last[e.Message]) < c.every
		if !quiet {
			c.last[e.Message] = e.Time
		}
		c.mu.Unlock()
		if quiet {
			return ce
		}
	}
	return c.Core.Check(e, ce)
}
