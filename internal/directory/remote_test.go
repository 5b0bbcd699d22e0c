package directory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/directory"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
)

// fakeRemote is the federation side: func fields, nil ones fail the test.
type fakeRemote struct {
	t              *testing.T
	queryDirectory func(dest string, alias id.RoomAlias) (*federation.DirectoryResponse, error)
	publicRooms    func(dest string, req federation.PublicRoomsRequest) (json.RawMessage, error)
	queryProfile   func(dest string, u id.UserID, field string) (*federation.ProfileResponse, error)
}

func (f *fakeRemote) QueryDirectory(_ context.Context, dest string, alias id.RoomAlias) (*federation.DirectoryResponse, error) {
	if f.queryDirectory == nil {
		f.t.Fatalf("QueryDirectory(%s, %s) called", dest, alias)
	}
	return f.queryDirectory(dest, alias)
}

func (f *fakeRemote) PublicRooms(_ context.Context, dest string, req federation.PublicRoomsRequest) (json.RawMessage, error) {
	if f.publicRooms == nil {
		f.t.Fatalf("PublicRooms(%s) called", dest)
	}
	return f.publicRooms(dest, req)
}

func (f *fakeRemote) QueryProfile(_ context.Context, dest string, u id.UserID, field string) (*federation.ProfileResponse, error) {
	if f.queryProfile == nil {
		f.t.Fatalf("QueryProfile(%s, %s) called", dest, u)
	}
	return f.queryProfile(dest, u, field)
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// newRemoteService is a directory of here.test whose remote queries go to
// f. It has no store or rooms: remote requests must not need them.
func newRemoteService(f *fakeRemote) *directory.Service {
	return directory.New(directory.Config{ServerName: "here.test", Remote: f}, nil, nil, discard)
}

// wantMxErr checks that err is a Matrix error with that status and code.
func wantMxErr(t *testing.T, call string, err error, status int, code string) {
	t.Helper()
	mx, ok := mxerr.As(err)
	if !ok {
		t.Fatalf("%s: error %v, want %d %s", call, err, status, code)
	}
	if mx.HTTPStatus() != status || mx.Code != code {
		t.Fatalf("%s: %d %s (%s), want %d %s", call, mx.HTTPStatus(), mx.Code, mx.Msg, status, code)
	}
}

func remoteErr(status int, code, msg string) error {
	return &federation.RemoteError{Server: "there.test", Status: status, ErrCode: code, Message: msg}
}

// secret is a remote error message that must never reach a client.
const secret = "internal detail of there.test"

func TestResolveRemoteAlias(t *testing.T) {
	t.Run("resolves", func(t *testing.T) {
		var asked string
		s := newRemoteService(&fakeRemote{t: t, queryDirectory: func(dest string, alias id.RoomAlias) (*federation.DirectoryResponse, error) {
			asked = dest + " " + string(alias)
			return &federation.DirectoryResponse{RoomID: "!room:there.test", Servers: []string{"there.test", "third.test", "third.test", "bad/name", ""}}, nil
		}})
		roomID, servers, err := s.ResolveAlias(context.Background(), "#lounge:there.test")
		if err != nil {
			t.Fatalf("ResolveAlias: %v", err)
		}
		if asked != "there.test #lounge:there.test" {
			t.Errorf("QueryDirectory asked %q, want there.test #lounge:there.test", asked)
		}
		if roomID != "!room:there.test" {
			t.Errorf("ResolveAlias room = %s, want !room:there.test", roomID)
		}
		if want := []string{"there.test", "third.test"}; !reflect.DeepEqual(servers, want) {
			t.Errorf("ResolveAlias servers = %q, want %q", servers, want)
		}
	})
	t.Run("alias server first when left out", func(t *testing.T) {
		s := newRemoteService(&fakeRemote{t: t, queryDirectory: func(string, id.RoomAlias) (*federation.DirectoryResponse, error) {
			return &federation.DirectoryResponse{RoomID: "!room:there.test", Servers: []string{"third.test"}}, nil
		}})
		_, servers, err := s.ResolveAlias(context.Background(), "#lounge:there.test")
		if want := []string{"there.test", "third.test"}; err != nil || !reflect.DeepEqual(servers, want) {
			t.Errorf("ResolveAlias = %q, %v, want %q", servers, err, want)
		}
	})

	for _, tc := range []struct {
		name   string
		res    *federation.DirectoryResponse
		err    error
		status int
		code   string
	}{
		{"not found", nil, remoteErr(404, "M_NOT_FOUND", secret), 404, "M_NOT_FOUND"},
		{"404 without errcode", nil, remoteErr(404, "", secret), 404, "M_NOT_FOUND"},
		{"unreachable", nil, fmt.Errorf("dial there.test: %w", federation.ErrUnreachable), 502, "M_UNKNOWN"},
		{"timeout", nil, context.DeadlineExceeded, 502, "M_UNKNOWN"},
		{"remote 403 not relayed", nil, remoteErr(403, "M_FORBIDDEN", secret), 502, "M_UNKNOWN"},
		{"remote 500", nil, remoteErr(500, "M_UNKNOWN", secret), 502, "M_UNKNOWN"},
		{"remote odd errcode", nil, remoteErr(400, "M_UNKNOWN_TOKEN", secret), 502, "M_UNKNOWN"},
		{"other error", nil, errors.New(secret), 502, "M_UNKNOWN"},
		{"server name refused", nil, fmt.Errorf("resolve: %w", federation.ErrInvalidServerName), 400, "M_INVALID_PARAM"},
		{"answer without room ID", &federation.DirectoryResponse{Servers: []string{"there.test"}}, nil, 502, "M_UNKNOWN"},
		{"answer with a bad room ID", &federation.DirectoryResponse{RoomID: "room"}, nil, 502, "M_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newRemoteService(&fakeRemote{t: t, queryDirectory: func(string, id.RoomAlias) (*federation.DirectoryResponse, error) {
				return tc.res, tc.err
			}})
			_, _, err := s.ResolveAlias(context.Background(), "#lounge:there.test")
			wantMxErr(t, "ResolveAlias", err, tc.status, tc.code)
			if mx, _ := mxerr.As(err); strings.Contains(mx.Msg, secret) {
				t.Errorf("ResolveAlias error %q passes on the remote's message", mx.Msg)
			}
		})
	}

	t.Run("cancelled request stays a context error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		s := newRemoteService(&fakeRemote{t: t, queryDirectory: func(string, id.RoomAlias) (*federation.DirectoryResponse, error) {
			cancel()
			return nil, fmt.Errorf("send: %w", context.Canceled)
		}})
		_, _, err := s.ResolveAlias(ctx, "#lounge:there.test")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ResolveAlias after cancel = %v, want context.Canceled", err)
		}
	})

	t.Run("no remote", func(t *testing.T) {
		s := directory.New(directory.Config{ServerName: "here.test"}, nil, nil, discard)
		_, _, err := s.ResolveAlias(context.Background(), "#lounge:there.test")
		wantMxErr(t, "ResolveAlias", err, 502, "M_UNKNOWN")
	})
}

func TestRemotePublicRooms(t *testing.T) {
	limit := 2
	room := func(typ string) *string { return &typ }
	t.Run("relays", func(t *testing.T) {
		var got federation.PublicRoomsRequest
		var dest string
		s := newRemoteService(&fakeRemote{t: t, publicRooms: func(d string, req federation.PublicRoomsRequest) (json.RawMessage, error) {
			dest, got = d, req
			return json.RawMessage(`{
				"chunk": [
					{"room_id": "!a:there.test", "name": "A", "topic": "t", "num_joined_members": 5, "world_readable": true,
					 "guest_can_join": false, "join_rule": "public", "avatar_url": "mxc://there.test/abc",
					 "canonical_alias": "#a:there.test", "room_type": "m.space", "secret_field": "x"},
					{"room_id": 7},
					{"name": "no room id"},
					{"room_id": "!b:there.test", "avatar_url": "https://evil.example/x.png", "canonical_alias": "nope", "num_joined_members": -3},
					{"room_id": "!c:there.test"}
				],
				"next_batch": "remote-token", "prev_batch": 12, "total_room_count_estimate": 40, "extra": true
			}`), nil
		}})
		out, err := s.PublicRooms(context.Background(), directory.PublicRoomsRequest{
			Server: "there.test", Limit: &limit, Since: "tok",
			Filter: &directory.PublicRoomsFilter{GenericSearchTerm: "lounge", RoomTypes: []*string{nil, room("m.space")}},
		})
		if err != nil {
			t.Fatalf("PublicRooms: %v", err)
		}
		if dest != "there.test" || got.Limit != 2 || got.Since != "tok" ||
			string(got.Filter) != `{"generic_search_term":"lounge","room_types":[null,"m.space"]}` {
			t.Errorf("PublicRooms asked %s %+v (filter %s), want there.test, limit 2, since tok and the filter", dest, got, got.Filter)
		}
		want := &directory.PublicRoomsResponse{
			Chunk: []directory.PublicRoom{
				{RoomID: "!a:there.test", Name: "A", Topic: "t", NumJoinedMembers: 5, WorldReadable: true, JoinRule: "public",
					AvatarURL: "mxc://there.test/abc", CanonicalAlias: "#a:there.test", RoomType: "m.space"},
				{RoomID: "!b:there.test"},
			},
			NextBatch:              "remote-token",
			TotalRoomCountEstimate: 40,
		}
		if !reflect.DeepEqual(out, want) {
			t.Errorf("PublicRooms =\n%+v\nwant\n%+v", out, want)
		}
	})

	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"forbidden", remoteErr(403, "M_FORBIDDEN", secret), 403, "M_FORBIDDEN"},
		{"unreachable", federation.ErrUnreachable, 502, "M_UNKNOWN"},
		{"remote 404 not relayed", remoteErr(404, "M_UNRECOGNIZED", secret), 502, "M_UNKNOWN"},
		{"remote 429 not relayed", remoteErr(429, "M_LIMIT_EXCEEDED", secret), 502, "M_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newRemoteService(&fakeRemote{t: t, publicRooms: func(string, federation.PublicRoomsRequest) (json.RawMessage, error) {
				return nil, tc.err
			}})
			_, err := s.PublicRooms(context.Background(), directory.PublicRoomsRequest{Server: "there.test"})
			wantMxErr(t, "PublicRooms", err, tc.status, tc.code)
			if mx, _ := mxerr.As(err); strings.Contains(mx.Msg, secret) {
				t.Errorf("PublicRooms error %q passes on the remote's message", mx.Msg)
			}
		})
	}

	t.Run("answer not an object", func(t *testing.T) {
		s := newRemoteService(&fakeRemote{t: t, publicRooms: func(string, federation.PublicRoomsRequest) (json.RawMessage, error) {
			return json.RawMessage(`[1,2]`), nil
		}})
		_, err := s.PublicRooms(context.Background(), directory.PublicRoomsRequest{Server: "there.test"})
		wantMxErr(t, "PublicRooms", err, http.StatusBadGateway, "M_UNKNOWN")
	})
	t.Run("bad server name", func(t *testing.T) {
		s := newRemoteService(&fakeRemote{t: t})
		_, err := s.PublicRooms(context.Background(), directory.PublicRoomsRequest{Server: "there.test/../x"})
		wantMxErr(t, "PublicRooms", err, 400, "M_INVALID_PARAM")
	})
	t.Run("negative limit checked first", func(t *testing.T) {
		s := newRemoteService(&fakeRemote{t: t})
		n := -1
		_, err := s.PublicRooms(context.Background(), directory.PublicRoomsRequest{Server: "there.test", Limit: &n})
		wantMxErr(t, "PublicRooms", err, 400, "M_INVALID_PARAM")
	})
}

func TestRemoteProfiles(t *testing.T) {
	str := func(s string) *string { return &s }
	t.Run("whole profile", func(t *testing.T) {
		var asked string
		lookup := directory.RemoteProfiles(&fakeRemote{t: t, queryProfile: func(dest string, u id.UserID, field string) (*federation.ProfileResponse, error) {
			asked = dest + " " + string(u) + " " + field
			return &federation.ProfileResponse{DisplayName: str("Bob"), AvatarURL: str("mxc://there.test/bob")}, nil
		}}, discard)
		p, err := lookup(context.Background(), "@bob:there.test", "")
		if err != nil {
			t.Fatalf("lookup: %v", err)
		}
		if asked != "there.test @bob:there.test " {
			t.Errorf("QueryProfile asked %q", asked)
		}
		if got := fmt.Sprintf("%s %s %d", p["displayname"], p["avatar_url"], len(p)); got != `"Bob" "mxc://there.test/bob" 2` {
			t.Errorf("lookup = %s", got)
		}
	})
	t.Run("only the field asked for, no bad avatar", func(t *testing.T) {
		lookup := directory.RemoteProfiles(&fakeRemote{t: t, queryProfile: func(string, id.UserID, string) (*federation.ProfileResponse, error) {
			return &federation.ProfileResponse{DisplayName: str("Bob"), AvatarURL: str("https://x")}, nil
		}}, discard)
		p, err := lookup(context.Background(), "@bob:there.test", "avatar_url")
		if err != nil || len(p) != 0 {
			t.Errorf("lookup avatar_url = %s, %v, want nothing", p, err)
		}
	})
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"not found", remoteErr(404, "M_NOT_FOUND", secret), 404, "M_NOT_FOUND"},
		{"forbidden", remoteErr(403, "M_FORBIDDEN", secret), 403, "M_FORBIDDEN"},
		{"unreachable", federation.ErrUnreachable, 502, "M_UNKNOWN"},
		{"remote 401", remoteErr(401, "M_UNAUTHORIZED", secret), 502, "M_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := directory.RemoteProfiles(&fakeRemote{t: t, queryProfile: func(string, id.UserID, string) (*federation.ProfileResponse, error) {
				return nil, tc.err
			}}, discard)
			_, err := lookup(context.Background(), "@bob:there.test", "displayname")
			wantMxErr(t, "lookup", err, tc.status, tc.code)
			if mx, _ := mxerr.As(err); strings.Contains(mx.Msg, secret) {
				t.Errorf("lookup error %q passes on the remote's message", mx.Msg)
			}
		})
	}
}
