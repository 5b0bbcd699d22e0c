package user_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/user"
)

// remoteProfiles is a fake RemoteProfileFunc that counts its calls.
type remoteProfiles struct {
	calls  int
	fields map[string]json.RawMessage
	err    error
	asked  []string
}

func (f *remoteProfiles) lookup(_ context.Context, u id.UserID, field string) (map[string]json.RawMessage, error) {
	f.calls++
	f.asked = append(f.asked, string(u)+" "+field)
	if f.err != nil {
		return nil, f.err
	}
	out := map[string]json.RawMessage{}
	for k, v := range f.fields {
		if field == "" || k == field {
			out[k] = v
		}
	}
	return out, nil
}

// newRemoteProfileService is a user service of here.test with no store:
// remote lookups must not need one. Its clock is *now.
func newRemoteProfileService(f *remoteProfiles, now *time.Time) *user.Service {
	s := user.New(user.Config{ServerName: "here.test", RemoteProfile: f.lookup}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	user.SetClock(s, func() time.Time { return *now })
	return s
}

func TestRemoteProfile(t *testing.T) {
	ctx := context.Background()
	bob := id.UserID("@bob:there.test")
	t.Run("whole profile, cached", func(t *testing.T) {
		now := time.Unix(1000, 0)
		f := &remoteProfiles{fields: map[string]json.RawMessage{"displayname": json.RawMessage(`"Bob"`), "avatar_url": json.RawMessage(`"mxc://there.test/b"`)}}
		s := newRemoteProfileService(f, &now)
		for i := range 2 {
			p, err := s.Profile(ctx, bob)
			if err != nil || string(p["displayname"]) != `"Bob"` || string(p["avatar_url"]) != `"mxc://there.test/b"` {
				t.Fatalf("Profile #%d = %s, %v, want Bob's display name and avatar", i, p, err)
			}
			p["displayname"] = json.RawMessage(`"changed by the caller"`)
		}
		if f.calls != 1 || f.asked[0] != "@bob:there.test " {
			t.Errorf("lookups = %q, want one of the whole profile", f.asked)
		}
		now = now.Add(6 * time.Minute)
		if _, err := s.Profile(ctx, bob); err != nil || f.calls != 2 {
			t.Errorf("Profile after expiry: %v, lookups %d, want a second lookup", err, f.calls)
		}
	})
	t.Run("one field", func(t *testing.T) {
		now := time.Unix(1000, 0)
		f := &remoteProfiles{fields: map[string]json.RawMessage{"displayname": json.RawMessage(`"Bob"`)}}
		s := newRemoteProfileService(f, &now)
		v, err := s.ProfileField(ctx, bob, "displayname")
		if err != nil || string(v) != `"Bob"` {
			t.Errorf("ProfileField(displayname) = %s, %v, want \"Bob\"", v, err)
		}
		_, err = s.ProfileField(ctx, bob, "avatar_url")
		wantCode(t, "ProfileField(avatar_url)", err, 404, "M_NOT_FOUND")
		if len(f.asked) != 2 || f.asked[0] != "@bob:there.test displayname" || f.asked[1] != "@bob:there.test avatar_url" {
			t.Errorf("lookups = %q, want displayname then avatar_url", f.asked)
		}
	})
	t.Run("not found cached briefly", func(t *testing.T) {
		now := time.Unix(1000, 0)
		f := &remoteProfiles{err: mxerr.NotFound("Profile of %s not found", bob)}
		s := newRemoteProfileService(f, &now)
		_, err := s.Profile(ctx, bob)
		wantCode(t, "Profile", err, 404, "M_NOT_FOUND")
		_, err = s.Profile(ctx, bob)
		wantCode(t, "Profile again", err, 404, "M_NOT_FOUND")
		if f.calls != 1 {
			t.Errorf("lookups = %d, want 1", f.calls)
		}
		now = now.Add(2 * time.Minute)
		_, _ = s.Profile(ctx, bob)
		if f.calls != 2 {
			t.Errorf("lookups after a minute = %d, want 2", f.calls)
		}
	})
	t.Run("unreachable not cached", func(t *testing.T) {
		now := time.Unix(1000, 0)
		f := &remoteProfiles{err: mxerr.Unknown("there.test could not be reached").WithStatus(502)}
		s := newRemoteProfileService(f, &now)
		for range 2 {
			_, err := s.Profile(ctx, bob)
			wantCode(t, "Profile", err, 502, "M_UNKNOWN")
		}
		if f.calls != 2 {
			t.Errorf("lookups = %d, want 2", f.calls)
		}
	})
	t.Run("bad server name", func(t *testing.T) {
		now := time.Unix(1000, 0)
		f := &remoteProfiles{}
		s := newRemoteProfileService(f, &now)
		_, err := s.Profile(ctx, "@bob:there.test/x")
		wantCode(t, "Profile", err, 400, "M_INVALID_PARAM")
		if f.calls != 0 {
			t.Errorf("lookups = %d, want none", f.calls)
		}
	})
	t.Run("no lookup configured", func(t *testing.T) {
		s := user.New(user.Config{ServerName: "here.test"}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		_, err := s.Profile(ctx, bob)
		wantCode(t, "Profile", err, 502, "M_UNKNOWN")
	})
}

func wantCode(t *testing.T, call string, err error, status int, code string) {
	t.Helper()
	mx, ok := mxerr.As(err)
	if !ok || mx.HTTPStatus() != status || mx.Code != code {
		t.Errorf("%s: error %v, want %d %s", call, err, status, code)
	}
}
