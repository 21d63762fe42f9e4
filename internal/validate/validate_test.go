package validate

import "testing"

func TestValidators(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		err bool
		fn  func() error
	}{
		"ports ok":               {false, func() error { return Ports("80, 443,8080", false) }},
		"ports empty":            {false, func() error { return Ports("", false) }},
		"ports wildcard allowed": {false, func() error { return Ports("*", true) }},
		"ports wildcard refused": {true, func() error { return Ports("*", false) }},
		"ports zero":             {true, func() error { return Ports("0", false) }},
		"ports too big":          {true, func() error { return Ports("65536", false) }},
		"ports name":             {true, func() error { return Ports("http", false) }},
		"cidrs ok":               {false, func() error { return CIDRs("10.0.0.0/8,fd00::/8", false) }},
		"cidrs bad mask":         {true, func() error { return CIDRs("10.0.0.0/33", false) }},
		"cidrs bare ip":          {true, func() error { return CIDRs("10.0.0.1", false) }},
		"cidrs wildcard refused": {true, func() error { return CIDRs("*", false) }},
		"log level":              {false, func() error { return LogLevel("warning") }},
		"log level bad":          {true, func() error { return LogLevel("loud") }},
		"scoped levels":          {false, func() error { return ScopedLogLevels("misc:error,upstream:debug") }},
		"scoped bare level":      {false, func() error { return ScopedLogLevels("debug") }},
		"scoped empty scope":     {true, func() error { return ScopedLogLevels(":debug") }},
		"scoped bad level":       {true, func() error { return ScopedLogLevels("misc:loud") }},
		"interfaces":             {false, func() error { return Interfaces("eth0,net1") }},
		"interface too long":     {true, func() error { return Interfaces("averyveryverylonginterface") }},
		"quantity":               {false, func() error { _, err := Quantity("100m"); return err }},
		"quantity bad":           {true, func() error { _, err := Quantity("lots"); return err }},
		"quantity control":       {true, func() error { _, err := Quantity("1\x00"); return err }},
		"bool":                   {false, func() error { _, err := Bool("true"); return err }},
		"bool bad":               {true, func() error { _, err := Bool("yes"); return err }},
		"uint32":                 {false, func() error { _, err := Uint32("30"); return err }},
		"uint32 negative":        {true, func() error { _, err := Uint32("-1"); return err }},
		"status port zero":       {false, func() error { _, err := StatusPort("0"); return err }},
		"status port too big":    {true, func() error { _, err := StatusPort("65536"); return err }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := tc.fn(); (err != nil) != tc.err {
				t.Errorf("err = %v, want error %v", err, tc.err)
			}
		})
	}
}
