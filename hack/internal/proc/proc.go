// Package proc holds what the development tools in hack/ share to run
// meshinject serve as a subprocess on 127.0.0.1: a free port, a loopback
// serving certificate, and a stop that signals before it kills.
package proc

import (
	"net"
	"os/exec"
	"syscall"
	"time"

	"github.com/meshinject/meshinject/certs"
)

// FreePort returns a TCP port free on 127.0.0.1 now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop sends SIGTERM, waits up to grace for the process to exit, then
// kills it and waits.
func Stop(cmd *exec.Cmd, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// LoopbackCerts writes a serving certificate for 127.0.0.1 into dir (as
// meshinject serve --cert-dir reads it) and returns its CA.
func LoopbackCerts(dir, commonName string) (*certs.Bundle, error) {
	ca, err := certs.NewCA(certs.Options{CommonName: commonName})
	if err != nil {
		return nil, err
	}
	srv, err := certs.NewServing(ca, certs.Options{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		return nil, err
	}
	return ca, certs.WriteDir(dir, srv, ca.CertPEM)
}
