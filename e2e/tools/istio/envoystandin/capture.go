package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"golang.org/x/sys/unix"
)

// capture is one connection a capture listener accepted.
type capture struct {
	// Direction is outbound (virtualOutbound, 15001) or inbound
	// (virtualInbound, 15006).
	Direction string `json:"direction"`
	// OriginalDst is where the connection was going before the rules sent
	// it here.
	OriginalDst string `json:"original_dst"`
	Source      string `json:"source"`
	// Mode is redirect (SO_ORIGINAL_DST of a NAT'd connection) or tproxy
	// (the local address of a transparent socket).
	Mode string `json:"mode"`
}

// inboundBind is the source address Istio's inbound passthrough binds, which
// istio-init's rules let through to the application.
var inboundBind = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 6)}

// startCapture binds the ports of the virtualOutbound and virtualInbound
// listeners of lds, each transparent when the listener says so.
func startCapture(ctx context.Context, lds []*listener.Listener, st *state) error {
	own := map[int]bool{}
	type bound struct {
		l         net.Listener
		direction string
	}
	var ls []bound
	for _, l := range lds {
		direction := map[string]string{"virtualOutbound": "outbound", "virtualInbound": "inbound"}[l.GetName()]
		if direction == "" {
			continue
		}
		port := int(l.GetAddress().GetSocketAddress().GetPortValue())
		transparent := l.GetTransparent().GetValue()
		lc := net.ListenConfig{}
		if transparent {
			lc.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1) })
				return errors.Join(err, serr)
			}
		}
		nl, err := lc.Listen(ctx, "tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("listener %s: %w", l.GetName(), err)
		}
		own[port] = true
		ls = append(ls, bound{nl, direction})
		record("listening", map[string]any{"listener": l.GetName(), "address": nl.Addr().String(), "transparent": transparent})
	}
	for _, b := range ls {
		go func() {
			<-ctx.Done()
			_ = b.l.Close()
		}()
		go accept(b.l, b.direction, own, st)
	}
	return nil
}

func accept(l net.Listener, direction string, own map[int]bool, st *state) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go passThrough(c.(*net.TCPConn), direction, own, st)
	}
}

// passThrough records the connection and copies it to and from its
// original destination.
func passThrough(c *net.TCPConn, direction string, own map[int]bool, st *state) {
	defer c.Close()
	dst, mode, err := originalDst(c)
	if err != nil {
		record("error", map[string]any{"direction": direction, "error": err.Error()})
		return
	}
	cp := capture{Direction: direction, OriginalDst: dst.String(), Source: c.RemoteAddr().String(), Mode: mode}
	st.mu.Lock()
	st.captures = append(st.captures, cp)
	st.mu.Unlock()
	fields := map[string]any{"direction": cp.Direction, "original_dst": cp.OriginalDst, "source": cp.Source, "mode": cp.Mode}
	if own[dst.Port] && (dst.IP.IsUnspecified() || isLocal(dst.IP)) {
		fields["error"] = "the original destination is a capture listener: refused"
		record("capture", fields)
		return
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if direction == "inbound" {
		d.LocalAddr = inboundBind
	}
	up, err := d.Dial("tcp4", dst.String())
	if err != nil {
		fields["error"] = err.Error()
		record("capture", fields)
		return
	}
	record("capture", fields)
	defer up.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		_ = up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	_ = c.CloseWrite()
	<-done
}

// originalDst is the connection's destination before capture: from
// conntrack's NAT (SO_ORIGINAL_DST) after REDIRECT, or the accepted
// socket's own local address after TPROXY, which leaves it unchanged.
func originalDst(c *net.TCPConn) (*net.TCPAddr, string, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, "", err
	}
	var addr *unix.IPv6Mreq
	var serr error
	if err := raw.Control(func(fd uintptr) {
		addr, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
	}); err != nil {
		return nil, "", err
	}
	local := c.LocalAddr().(*net.TCPAddr)
	if serr != nil {
		// No NAT entry: a TPROXY'd connection keeps its destination.
		return local, "tproxy", nil
	}
	b := addr.Multiaddr
	dst := &net.TCPAddr{IP: net.IPv4(b[4], b[5], b[6], b[7]), Port: int(binary.BigEndian.Uint16(b[2:4]))}
	if dst.Port == local.Port && dst.IP.Equal(local.IP) {
		return local, "tproxy", nil
	}
	return dst, "redirect", nil
}

// isLocal reports whether ip is one of this network namespace's addresses.
func isLocal(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
