package media_test

import (
	"net/netip"
	"testing"

	"polder.dev/polder/internal/media"
)

func TestIPFilter(t *testing.T) {
	def, err := media.NewIPFilter(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	custom, err := media.NewIPFilter([]string{"93.184.0.0/16"}, []string{"127.0.0.1", "10.5.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ip          string
		def, custom bool
	}{
		{"127.0.0.1", false, true},
		{"127.0.0.2", false, false},
		{"10.1.2.3", false, false},
		{"10.5.1.1", false, true},
		{"172.16.0.1", false, false},
		{"192.168.1.1", false, false},
		{"100.64.0.1", false, false},
		{"169.254.169.254", false, false},
		{"224.0.0.1", false, false},
		{"0.0.0.0", false, false},
		{"::1", false, false},
		{"::ffff:127.0.0.1", false, true},
		{"::ffff:10.0.0.1", false, false},
		{"fe80::1", false, false},
		{"fd00::1", false, false},
		{"ff02::1", false, false},
		{"64:ff9b::a00:1", false, false},
		{"93.184.216.34", true, false},
		{"8.8.8.8", true, true},
		{"2a00:1450:4001::1", true, true},
	} {
		ip := netip.MustParseAddr(tc.ip)
		if got := def.Allowed(ip); got != tc.def {
			t.Errorf("default Allowed(%s) = %v, want %v", tc.ip, got, tc.def)
		}
		if got := custom.Allowed(ip); got != tc.custom {
			t.Errorf("custom Allowed(%s) = %v, want %v", tc.ip, got, tc.custom)
		}
	}
	if _, err := media.NewIPFilter([]string{"not-a-cidr"}, nil); err == nil {
		t.Errorf("NewIPFilter(not-a-cidr) = nil error")
	}
}
