package user

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// Profiles (client-server API, "Profiles"): displayname, avatar_url and,
// since v1.16, m.tz and custom fields with namespaced keys. Any local
// profile may be read by anyone, as Synapse allows by default. Propagating
// a change to the user's member events is the caller's job
// (room.RefreshProfile): room ranks above user.

// Profile limits.
const (
	// MaxDisplayNameLen is Synapse's limit on display names, in code points.
	MaxDisplayNameLen = 256
	// MaxAvatarURLLen is Synapse's limit on avatar URLs, in bytes.
	MaxAvatarURLLen = 1000
	// MaxProfileSize bounds a whole profile (spec: "the total profile
	// MUST be under 64 KiB").
	MaxProfileSize = 64*1024 - 1
	// maxFieldNameLen is the spec's limit on a profile key, in bytes.
	maxFieldNameLen = 255
)

// Profile field names with rules of their own.
const (
	FieldDisplayName = store.ProfileDisplayName
	FieldAvatarURL   = store.ProfileAvatarURL
	FieldTimeZone    = "m.tz"
)

// needsFederation is the error for a profile of another server when this
// server has no RemoteProfile lookup to ask it.
func needsFederation(u id.UserID) error {
	return mxerr.Unknown("Looking up profiles of users of %s needs federation, which is disabled on this server", u.Homeserver()).
		WithStatus(http.StatusBadGateway)
}

// isRemoteUser reports whether u is a well-formed user ID of a server
// other than local.
func isRemoteUser(u id.UserID, local string) bool {
	_, _, err := u.Parse()
	return err == nil && strings.HasPrefix(string(u), "@") && u.Homeserver() != local
}

// profileOwner returns the localpart of a local user with an account.
// Errors: M_INVALID_PARAM for a malformed user ID, M_NOT_FOUND for an
// unknown user, a 502 for a user of another server.
func (s *Service) profileOwner(ctx context.Context, u id.UserID) (store.Account, error) {
	if _, _, err := u.Parse(); err != nil || !strings.HasPrefix(string(u), "@") {
		return store.Account{}, mxerr.InvalidParam("Invalid user ID %q", u)
	}
	if u.Homeserver() != s.cfg.ServerName {
		return store.Account{}, needsFederation(u)
	}
	a, err := s.db.Account(ctx, u.Localpart())
	if errors.Is(err, store.ErrNotFound) {
		return a, mxerr.NotFound("User %s does not exist", u)
	}
	return a, err
}

// Profile returns every field of a user's profile as JSON values by name.
// A deactivated user's profile is empty. The profile of a user of another
// server comes from that server (remote_profile.go). Errors: see
// profileOwner and RemoteProfileFunc.
func (s *Service) Profile(ctx context.Context, u id.UserID) (map[string]json.RawMessage, error) {
	if isRemoteUser(u, s.cfg.ServerName) {
		return s.remoteProfile(ctx, u, "")
	}
	a, err := s.profileOwner(ctx, u)
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	if a.Deactivated {
		return out, nil
	}
	p, err := s.db.Profile(ctx, a.Localpart)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	fields, err := s.db.ProfileFields(ctx, a.Localpart)
	if err != nil {
		return nil, err
	}
	for k, v := range fields {
		out[k] = v
	}
	if p.DisplayName != "" {
		out[FieldDisplayName], _ = json.Marshal(p.DisplayName)
	}
	if p.AvatarURL != "" {
		out[FieldAvatarURL], _ = json.Marshal(p.AvatarURL)
	}
	return out, nil
}

// ProfileField returns one field of a user's profile. M_NOT_FOUND if the
// user has no such field; M_INVALID_PARAM or M_KEY_TOO_LARGE for an
// invalid field name.
func (s *Service) ProfileField(ctx context.Context, u id.UserID, field string) (json.RawMessage, error) {
	if err := checkFieldName(field); err != nil {
		return nil, err
	}
	var p map[string]json.RawMessage
	var err error
	if isRemoteUser(u, s.cfg.ServerName) {
		p, err = s.remoteProfile(ctx, u, field)
	} else {
		p, err = s.Profile(ctx, u)
	}
	if err != nil {
		return nil, err
	}
	v, ok := p[field]
	if !ok {
		return nil, mxerr.NotFound("%s has no profile field %s", u, field)
	}
	return v, nil
}

// SetProfileField sets a field of who's own profile and reports whether
// the value changed. value is the field's JSON value: a string for
// displayname (at most MaxDisplayNameLen code points; "" removes it),
// avatar_url (an mxc:// URI or "" to remove it) and m.tz; any JSON but null
// for other fields. Errors: M_FORBIDDEN for another user's profile,
// M_INVALID_PARAM, M_BAD_JSON, M_KEY_TOO_LARGE, M_PROFILE_TOO_LARGE.
func (s *Service) SetProfileField(ctx context.Context, who Identity, u id.UserID, field string, value json.RawMessage) (bool, error) {
	if err := checkFieldName(field); err != nil {
		return false, err
	}
	if err := s.checkOwnProfile(who, u); err != nil {
		return false, err
	}
	if len(value) == 0 || string(value) == "null" {
		return false, mxerr.InvalidParam("%s may not be null", field)
	}
	if who.IsGuest && field != FieldDisplayName {
		return false, mxerr.GuestAccessForbidden("Guests may only set their display name")
	}
	var str string
	switch field {
	case FieldDisplayName, FieldAvatarURL, FieldTimeZone:
		if err := json.Unmarshal(value, &str); err != nil {
			return false, mxerr.BadJSON("%s must be a string", field)
		}
		// Store strings in one form, whatever escapes the client used.
		value, _ = json.Marshal(str)
	default:
		var b bytes.Buffer
		if err := json.Compact(&b, value); err != nil {
			return false, mxerr.BadJSON("Invalid value of %s", field)
		}
		value = b.Bytes()
	}
	switch field {
	case FieldDisplayName:
		if utf8.RuneCountInString(str) > MaxDisplayNameLen {
			return false, mxerr.InvalidParam("displayname is longer than %d characters", MaxDisplayNameLen)
		}
	case FieldAvatarURL:
		if len(str) > MaxAvatarURLLen {
			return false, mxerr.InvalidParam("avatar_url is longer than %d bytes", MaxAvatarURLLen)
		}
		if str != "" && !ValidMXC(str) {
			return false, mxerr.InvalidParam("avatar_url must be an mxc:// URI")
		}
	}
	old, err := s.Profile(ctx, u)
	if err != nil {
		return false, err
	}
	if string(old[field]) == string(value) || (str == "" && old[field] == nil && (field == FieldDisplayName || field == FieldAvatarURL)) {
		return false, nil
	}
	err = s.db.SetProfileField(ctx, who.Localpart, field, value, MaxProfileSize)
	if errors.Is(err, store.ErrTooLarge) {
		return false, profileTooLarge()
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// DeleteProfileField removes a field of who's own profile and reports
// whether it was set. Errors as SetProfileField.
func (s *Service) DeleteProfileField(ctx context.Context, who Identity, u id.UserID, field string) (bool, error) {
	if err := checkFieldName(field); err != nil {
		return false, err
	}
	if err := s.checkOwnProfile(who, u); err != nil {
		return false, err
	}
	if who.IsGuest && field != FieldDisplayName {
		return false, mxerr.GuestAccessForbidden("Guests may only change their display name")
	}
	old, err := s.Profile(ctx, u)
	if err != nil {
		return false, err
	}
	if old[field] == nil {
		return false, nil
	}
	if err := s.db.SetProfileField(ctx, who.Localpart, field, nil, MaxProfileSize); err != nil {
		return false, err
	}
	return true, nil
}

func (s *Service) checkOwnProfile(who Identity, u id.UserID) error {
	if _, _, err := u.Parse(); err != nil || !strings.HasPrefix(string(u), "@") {
		return mxerr.InvalidParam("Invalid user ID %q", u)
	}
	if u != who.UserID {
		return mxerr.Forbidden("You may only change your own profile")
	}
	return nil
}

func profileTooLarge() error {
	return &mxerr.Error{Code: "M_PROFILE_TOO_LARGE", Msg: "The profile would be larger than 64 KiB"}
}

// checkFieldName checks a profile key: displayname, avatar_url, m.tz or a
// custom key in the Common Namespaced Identifier Grammar (the pattern of
// the spec's keyName: lower-case dot-separated segments, at least two),
// at most 255 bytes.
func checkFieldName(f string) error {
	if len(f) > maxFieldNameLen {
		return &mxerr.Error{Code: "M_KEY_TOO_LARGE", Msg: "Profile keys may be at most 255 bytes"}
	}
	switch f {
	case FieldDisplayName, FieldAvatarURL, FieldTimeZone:
		return nil
	}
	segs := strings.Split(f, ".")
	if len(segs) < 2 {
		return mxerr.InvalidParam("Invalid profile key %q: custom keys are namespaced, like com.example.field", f)
	}
	for _, seg := range segs {
		if seg == "" || seg[0] < 'a' || seg[0] > 'z' {
			return mxerr.InvalidParam("Invalid profile key %q", f)
		}
		for i := 1; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
				return mxerr.InvalidParam("Invalid profile key %q", f)
			}
		}
	}
	return nil
}

// ValidMXC reports whether s is an mxc:// URI: mxc://<server-name>/<media-id>
// with a media ID of A-Z, a-z, 0-9, _ and - (client-server API, "Matrix
// Content (mxc://) URIs").
func ValidMXC(s string) bool {
	rest, ok := strings.CutPrefix(s, "mxc://")
	if !ok {
		return false
	}
	server, media, ok := strings.Cut(rest, "/")
	if !ok || server == "" || media == "" {
		return false
	}
	for i := 0; i < len(server); i++ {
		c := server[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]", c) >= 0) {
			return false
		}
	}
	for i := 0; i < len(media); i++ {
		c := media[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
