// Package validate parses the string forms that injection annotations and
// values share: port lists, CIDR lists, quantities, log levels, booleans.
// Each parser returns an error that quotes the offending value; callers add
// the annotation or field name.
package validate

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Ports checks a comma-separated list of ports (1-65535). When allowWildcard
// is true the single value "*" is accepted. Empty lists are valid.
func Ports(s string, allowWildcard bool) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if s == "*" {
		if allowWildcard {
			return nil
		}
		return errors.New(`"*" is not allowed here`)
	}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, err := port(p); err != nil {
			return err
		}
	}
	return nil
}

// port parses a single port in 1-65535.
func port(s string) (int32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not a number in 1-65535", s)
	}
	return int32(n), nil
}

// StatusPort parses a status port: 0 (disabled) to 65535.
func StatusPort(s string) (int32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, errors.New("not a number in 0-65535")
	}
	return int32(n), nil
}

// CIDRs checks a comma-separated list of CIDRs. When allowWildcard is true
// the single value "*" is accepted. Empty lists are valid.
func CIDRs(s string, allowWildcard bool) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	if s == "*" {
		if allowWildcard {
			return nil
		}
		return errors.New(`"*" is not allowed here`)
	}
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("%q is not a CIDR", c)
		}
	}
	return nil
}

// Uint32 parses a non-negative 32-bit integer.
func Uint32(s string) (int32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 31)
	if err != nil {
		return 0, errors.New("not a non-negative integer")
	}
	return int32(n), nil
}

// Bool parses true/false in the forms strconv.ParseBool accepts.
func Bool(s string) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return false, errors.New("not a boolean (true or false)")
	}
	return b, nil
}

// Quantity parses a Kubernetes resource quantity, refusing control characters
// (which the quantity parser would otherwise report confusingly).
func Quantity(s string) (resource.Quantity, error) {
	for _, r := range s {
		if unicode.IsControl(r) {
			return resource.Quantity{}, errors.New("contains a control character")
		}
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return resource.Quantity{}, errors.New("not a quantity (e.g. 100m, 1Gi)")
	}
	if q.Sign() < 0 {
		return resource.Quantity{}, errors.New("must not be negative")
	}
	if q.Cmp(maxQuantity) > 0 {
		return resource.Quantity{}, fmt.Errorf("too large (at most %s)", maxQuantityText)
	}
	return q, nil
}

// maxQuantity is the largest quantity Kubernetes stores for a resource:
// its value in thousandths must fit an int64.
var maxQuantity = *resource.NewMilliQuantity(math.MaxInt64, resource.DecimalSI)

// maxQuantityText is maxQuantity written out once: Quantity.String caches
// its text in the value, so calling it on the shared one from concurrent
// reviews would race.
var maxQuantityText = maxQuantity.String()

// logLevels are the levels Envoy and pilot-agent accept.
var logLevels = map[string]bool{
	"trace": true, "debug": true, "info": true, "warning": true, "warn": true,
	"error": true, "critical": true, "off": true, "none": true, "fatal": true,
}

// LogLevel checks a single log level (trace, debug, info, warning, error,
// critical, off).
func LogLevel(s string) error {
	if !logLevels[strings.TrimSpace(s)] {
		return fmt.Errorf("%q is not a log level (trace, debug, info, warning, error, critical, off)", strings.TrimSpace(s))
	}
	return nil
}

// ScopedLogLevels checks a comma-separated list of scope:level pairs, e.g.
// "misc:error,upstream:debug". A bare level (no scope) is also accepted.
func ScopedLogLevels(s string) error {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		level := e
		if i := strings.LastIndexByte(e, ':'); i >= 0 {
			if i == 0 {
				return fmt.Errorf("empty scope in %q", e)
			}
			level = e[i+1:]
		}
		if err := LogLevel(level); err != nil {
			return err
		}
	}
	return nil
}

// Interfaces checks a comma-separated list of network interface names.
func Interfaces(s string) error {
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if len(e) > 15 || strings.ContainsAny(e, " /\t\n") {
			return fmt.Errorf("%q is not an interface name", e)
		}
	}
	return nil
}
