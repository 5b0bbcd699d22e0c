package user

import (
	"context"
	"errors"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// Registration tokens, managed by admins (Synapse admin API
// "Registration Tokens", which existing admin tools speak).

// NewRegistrationToken is a request to create a token; a nil Token is
// generated with Length characters (default 16).
type NewRegistrationToken struct {
	Token       *string `json:"token"`
	UsesAllowed *int    `json:"uses_allowed"`
	ExpiryTime  *int64  `json:"expiry_time"`
	Length      *int    `json:"length"`
}

const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"

// CreateRegistrationToken creates a token. Errors: M_INVALID_PARAM for bad
// values, M_INVALID_PARAM when the token exists.
func (s *Service) CreateRegistrationToken(ctx context.Context, req NewRegistrationToken) (store.RegistrationToken, error) {
	t := store.RegistrationToken{UsesAllowed: req.UsesAllowed, ExpiryTime: req.ExpiryTime}
	if req.Token != nil {
		t.Token = *req.Token
		if t.Token == "" || len(t.Token) > 64 {
			return t, mxerr.InvalidParam("token must be 1 to 64 characters")
		}
		for _, c := range t.Token {
			if !containsRune(tokenAlphabet, c) {
				return t, mxerr.InvalidParam("token may contain only A-Z, a-z, 0-9, '.', '_', '~' and '-'")
			}
		}
	} else {
		n := 16
		if req.Length != nil {
			n = *req.Length
		}
		if n < 1 || n > 64 {
			return t, mxerr.InvalidParam("length must be 1 to 64")
		}
		t.Token = randomString(n, tokenAlphabet[:62])
	}
	if t.UsesAllowed != nil && *t.UsesAllowed < 0 {
		return t, mxerr.InvalidParam("uses_allowed must not be negative")
	}
	if t.ExpiryTime != nil && *t.ExpiryTime < s.now().UnixMilli() {
		return t, mxerr.InvalidParam("expiry_time must not be in the past")
	}
	err := s.db.CreateRegistrationToken(ctx, t)
	if errors.Is(err, store.ErrConflict) {
		return t, mxerr.InvalidParam("token already exists")
	}
	return t, err
}

func containsRune(s string, r rune) bool {
	for _, c := range s {
		if c == r {
			return true
		}
	}
	return false
}

// RegistrationTokens lists tokens; valid filters by validity when not nil.
func (s *Service) RegistrationTokens(ctx context.Context, valid *bool) ([]store.RegistrationToken, error) {
	all, err := s.db.RegistrationTokens(ctx)
	if err != nil || valid == nil {
		return all, err
	}
	now := s.now().UnixMilli()
	out := []store.RegistrationToken{}
	for _, t := range all {
		if t.Valid(now) == *valid {
			out = append(out, t)
		}
	}
	return out, nil
}

// RegistrationToken returns a token. Errors: M_NOT_FOUND.
func (s *Service) RegistrationToken(ctx context.Context, token string) (store.RegistrationToken, error) {
	t, err := s.db.RegistrationToken(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return t, mxerr.NotFound("No such registration token")
	}
	return t, err
}

// UpdateRegistrationToken changes uses_allowed and expiry_time; fields
// absent from the request (set false) keep their value.
func (s *Service) UpdateRegistrationToken(ctx context.Context, token string, uses *int, setUses bool, expiry *int64, setExpiry bool) (store.RegistrationToken, error) {
	t, err := s.RegistrationToken(ctx, token)
	if err != nil {
		return t, err
	}
	if setUses {
		if uses != nil && *uses < 0 {
			return t, mxerr.InvalidParam("uses_allowed must not be negative")
		}
		t.UsesAllowed = uses
	}
	if setExpiry {
		if expiry != nil && *expiry < s.now().UnixMilli() {
			return t, mxerr.InvalidParam("expiry_time must not be in the past")
		}
		t.ExpiryTime = expiry
	}
	if err := s.db.UpdateRegistrationToken(ctx, token, t.UsesAllowed, t.ExpiryTime); err != nil {
		return t, err
	}
	return t, nil
}

// DeleteRegistrationToken deletes a token. Errors: M_NOT_FOUND.
func (s *Service) DeleteRegistrationToken(ctx context.Context, token string) error {
	err := s.db.DeleteRegistrationToken(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("No such registration token")
	}
	return err
}
