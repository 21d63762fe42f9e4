package server

import (
	stdlog "log"
	"strings"

	"github.com/go-logr/logr"
)

// stdLogWriter turns the lines net/http writes to the standard logger
// (TLS handshake errors, panics in handlers, the servers' own errors; the
// webhook, metrics and health servers controller-runtime builds set no
// ErrorLog of their own) into entries of the structured log.
type stdLogWriter struct{ log logr.Logger }

func (w stdLogWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// redirectStdLog sends the standard logger's output to log until the
// returned function restores it.
func redirectStdLog(log logr.Logger) (restore func()) {
	out, flags, prefix := stdlog.Writer(), stdlog.Flags(), stdlog.Prefix()
	stdlog.SetOutput(stdLogWriter{log})
	stdlog.SetFlags(0)
	stdlog.SetPrefix("")
	return func() {
		stdlog.SetOutput(out)
		stdlog.SetFlags(flags)
		stdlog.SetPrefix(prefix)
	}
}
