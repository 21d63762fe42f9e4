package server

import (
	"io"
	stdlog "log"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"
)

// stdLog sends the lines net/http writes to the standard logger (TLS
// handshake errors, panics in handlers, the servers' own errors; the
// webhook, metrics and health servers controller-runtime builds set no
// ErrorLog of their own) to the structured log of the Run that started
// last and is still running; with none, to where they went before.
var stdLog struct {
	mu      sync.Mutex
	active  []*logr.Logger
	saved   stdLogState
	claimed bool
}

// stdLogState is the standard logger's setup before the first Run took it.
type stdLogState struct {
	out    io.Writer
	flags  int
	prefix string
}

// stdLogWriter is the standard logger's output while a Run is active.
type stdLogWriter struct{}

func (stdLogWriter) Write(p []byte) (int, error) {
	stdLog.mu.Lock()
	var log *logr.Logger
	if n := len(stdLog.active); n > 0 {
		log = stdLog.active[n-1]
	}
	out := stdLog.saved.out
	stdLog.mu.Unlock()
	if log == nil {
		return out.Write(p)
	}
	log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// redirectStdLog sends the standard logger's output to log until the
// returned function is called; Runs at once (tests) each get their own
// until they end.
func redirectStdLog(log logr.Logger) (restore func()) {
	stdLog.mu.Lock()
	defer stdLog.mu.Unlock()
	if !stdLog.claimed {
		stdLog.saved = stdLogState{out: stdlog.Writer(), flags: stdlog.Flags(), prefix: stdlog.Prefix()}
		stdLog.claimed = true
	}
	stdlog.SetOutput(stdLogWriter{})
	stdlog.SetFlags(0)
	stdlog.SetPrefix("")
	l := &log
	stdLog.active = append(stdLog.active, l)
	return func() {
		stdLog.mu.Lock()
		defer stdLog.mu.Unlock()
		stdLog.active = slices.DeleteFunc(stdLog.active, func(a *logr.Logger) bool { return a == l })
		if len(stdLog.active) == 0 {
			stdlog.SetOutput(stdLog.saved.out)
			stdlog.SetFlags(stdLog.saved.flags)
			stdlog.SetPrefix(stdLog.saved.prefix)
			stdLog.claimed = false
		}
	}
}
