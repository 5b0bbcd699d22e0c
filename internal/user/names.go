package user

import (
	"crypto/rand"
	"strings"

	"polder.dev/polder/internal/mxerr"
)

// ParseLocalpart maps a requested username onto a localpart: lower-cased,
// then checked against the grammar for new user IDs (spec appendix "User
// Identifiers": a-z, 0-9, and . _ = - / +) and the 255-byte limit of the full
// ID. Leading '_' is reserved for application services and all-digit
// localparts for guests. Errors are M_INVALID_USERNAME.
func (s *Service) ParseLocalpart(username string) (string, error) {
	lp := strings.ToLower(username)
	if lp == "" {
		return "", mxerr.InvalidUsername("username must not be empty")
	}
	for i := 0; i < len(lp); i++ {
		c := lp[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("._=-/+", c) >= 0) {
			return "", mxerr.InvalidUsername("username may contain only a-z, 0-9 and . _ = - / +")
		}
	}
	if len("@"+lp+":"+s.cfg.ServerName) > 255 {
		return "", mxerr.InvalidUsername("user ID would be longer than 255 bytes")
	}
	if lp[0] == '_' {
		return "", mxerr.InvalidUsername("usernames starting with '_' are reserved")
	}
	if strings.Trim(lp, "0123456789") == "" {
		return "", mxerr.InvalidUsername("all-digit usernames are reserved for guests")
	}
	return lp, nil
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// newDeviceID returns a random device ID like Synapse's: ten capital letters.
func newDeviceID() string { return randomString(10, idAlphabet) }
