package user

import (
	"golang.org/x/crypto/bcrypt"

	"polder.dev/polder/internal/mxerr"
)

// Passwords are bcrypt hashes, as in Synapse, so that accounts migrated from
// a Synapse database keep their passwords.

const maxPasswordBytes = 512

func (s *Service) hashPassword(pw string) (string, error) {
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword(bcryptInput(pw), s.cfg.PasswordHashCost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// checkPassword enforces the limits on new passwords. bcrypt reads only 72
// bytes; longer passwords are allowed but only that prefix counts, as in
// Synapse.
func checkPassword(pw string) error {
	if pw == "" {
		return mxerr.WeakPassword("password must not be empty")
	}
	if len(pw) > maxPasswordBytes {
		return mxerr.InvalidParam("password is longer than %d bytes", maxPasswordBytes)
	}
	return nil
}

func passwordMatches(hash, pw string) bool {
	if hash == "" || len(pw) > maxPasswordBytes {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), bcryptInput(pw)) == nil
}

func bcryptInput(pw string) []byte {
	b := []byte(pw)
	if len(b) > 72 {
		b = b[:72]
	}
	return b
}
