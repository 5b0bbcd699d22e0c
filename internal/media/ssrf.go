package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// DefaultIPBlocklist is what URL previews may not connect to unless
// allowlisted: loopback, private (RFC 1918), carrier-grade NAT, link-local,
// multicast, reserved and documentation ranges, IPv6 unique-local,
// site-local and NAT64 (which reaches IPv4 through a gateway). Mapped IPv4
// addresses are checked as IPv4.
var DefaultIPBlocklist = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
	"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32",
	"2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
}

// IPFilter decides which addresses outbound fetches on behalf of users
// (URL previews) may connect to. It is checked when dialling, after DNS
// resolution, so that neither a redirect nor a name that resolves to an
// inner address (DNS rebinding) gets past it.
type IPFilter struct {
	block, allow []netip.Prefix
}

// ErrBlockedIP is returned for a connection to a blocked address.
var ErrBlockedIP = errors.New("address is blocked")

// NewIPFilter blocks DefaultIPBlocklist and the CIDRs in extraBlock, except
// the CIDRs in allow (which win).
func NewIPFilter(extraBlock, allow []string) (*IPFilter, error) {
	f := &IPFilter{}
	for _, list := range []struct {
		cidrs []string
		dst   *[]netip.Prefix
	}{{append(append([]string{}, DefaultIPBlocklist...), extraBlock...), &f.block}, {allow, &f.allow}} {
		for _, c := range list.cidrs {
			c = strings.TrimSpace(c)
			if c == "" {
				continue
			}
			if !strings.Contains(c, "/") {
				if a, err := netip.ParseAddr(c); err == nil {
					c = netip.PrefixFrom(a, a.BitLen()).String()
				}
			}
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return nil, fmt.Errorf("bad CIDR %q: %v", c, err)
			}
			*list.dst = append(*list.dst, p.Masked())
		}
	}
	return f, nil
}

// Allowed reports whether ip may be connected to.
func (f *IPFilter) Allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range f.allow {
		if p.Contains(ip) {
			return true
		}
	}
	for _, p := range f.block {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Control is a net.Dialer Control function that refuses blocked addresses.
func (f *IPFilter) Control(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s is not an IP address", ErrBlockedIP, host)
	}
	if !f.Allowed(ip) {
		return fmt.Errorf("%w: %s", ErrBlockedIP, ip)
	}
	return nil
}
