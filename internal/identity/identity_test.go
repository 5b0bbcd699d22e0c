package identity_test

import (
	"testing"

	"polder.dev/polder/internal/identity"
)

// The examples of the identity service API, "sha256".
func TestHashAddress(t *testing.T) {
	tests := []struct {
		address, medium, want string
	}{
		{"alice@example.com", "email", "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"},
		{"bob@example.com", "email", "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8"},
		{"18005552067", "msisdn", "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"},
	}
	for _, tc := range tests {
		t.Run(tc.address, func(t *testing.T) {
			if got := identity.HashAddress(tc.address, tc.medium, "matrixrocks"); got != tc.want {
				t.Errorf("HashAddress(%q, %q, matrixrocks) = %q, want %q", tc.address, tc.medium, got, tc.want)
			}
		})
	}
}
