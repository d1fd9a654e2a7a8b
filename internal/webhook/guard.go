package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
)

// The SSRF guard: a webhook's target is refused when its host resolves to
// an address of this node's own networks — loopback, private, carrier
// NAT, link-local, unspecified or multicast — unless private targets are
// allowed (--webhook-allow-private). It is checked when a webhook is
// created and again at each dial, on the address actually dialled, so a
// name that resolved to a public address then and to a private one now
// (DNS rebinding) is refused too.

// ErrForbiddenTarget: the target is on a network webhooks may not reach.
var ErrForbiddenTarget = errors.New("webhook target is not allowed")

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// forbidden reports why ip may not be a target ("" when it may).
func forbidden(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate(), cgnat.Contains(ip):
		return "private"
	case ip.IsMulticast():
		return "multicast"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsUnspecified():
		return "unspecified"
	}
	return ""
}

// Resolver looks names up (net.DefaultResolver.LookupNetIP; tests give
// their own).
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// CheckTarget resolves rawURL's host and refuses it when any of its
// addresses is forbidden (unless allowPrivate).
func CheckTarget(ctx context.Context, rawURL string, allowPrivate bool, resolve Resolver) error {
	if allowPrivate {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		if resolve == nil {
			resolve = func(ctx context.Context, h string) ([]netip.Addr, error) {
				return net.DefaultResolver.LookupNetIP(ctx, "ip", h)
			}
		}
		if addrs, err = resolve(ctx, host); err != nil {
			return fmt.Errorf("cannot resolve %s: %w", host, err)
		}
	}
	for _, ip := range addrs {
		if why := forbidden(ip); why != "" {
			name := host + " resolves to " + ip.Unmap().String() + ","
			if ip.Unmap().String() == host {
				name = host + " is"
			}
			return fmt.Errorf("%w: %s a %s address (start the node with --webhook-allow-private to allow it)", ErrForbiddenTarget, name, why)
		}
	}
	return nil
}

// dialControl refuses, at dial time, a connection to a forbidden address
// (net.Dialer.Control: address is the resolved ip:port).
func dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read the address %q", ErrForbiddenTarget, address)
	}
	if why := forbidden(ap.Addr()); why != "" {
		return fmt.Errorf("%w: %s is a %s address (start the node with --webhook-allow-private to allow it)", ErrForbiddenTarget, ap.Addr().Unmap(), why)
	}
	return nil
}
