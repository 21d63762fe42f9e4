// Command devcert writes a development CA and a serving certificate for
// 127.0.0.1 and localhost into a directory, for `make run`. It is not part
// of the product binary.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/meshinject/meshinject/certs"
)

func main() {
	dir := flag.String("dir", ".cache/dev-certs", "directory to write tls.crt, tls.key and ca.crt into")
	flag.Parse()
	if _, err := os.Stat(filepath.Join(*dir, certs.KeyFile)); err == nil {
		return // keep the existing certificate
	}
	ca, err := certs.NewCA(certs.Options{CommonName: "meshinject development CA"})
	if err == nil {
		var srv *certs.Bundle
		srv, err = certs.NewServing(ca, certs.Options{DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
		if err == nil {
			err = certs.WriteDir(*dir, srv, ca.CertPEM)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devcert:", err)
		os.Exit(1)
	}
}
