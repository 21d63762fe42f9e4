// Package promreg registers Prometheus collectors that describe the
// process. controller-runtime's manager serves one process-wide registry,
// so a second server in the same process (tests run several) shares the
// first one's collectors instead of failing to register its own.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers *c with reg. When reg already holds an equal
// collector (same names, help and labels), *c becomes that one, so both
// users record into the series reg serves.
func Register[T prometheus.Collector](reg prometheus.Registerer, c *T) error {
	err := reg.Register(*c)
	var exists prometheus.AlreadyRegisteredError
	if errors.As(err, &exists) {
		if prev, ok := exists.ExistingCollector.(T); ok {
			*c = prev
			return nil
		}
	}
	return err
}
