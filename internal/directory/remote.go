package directory

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/user"
)

// What this server asks other servers on behalf of its clients: the room
// an alias of theirs names (server-server API, "Querying for information"
// /query/directory), their published room directory (/publicRooms) and, for
// user, their users' profiles (/query/profile).
//
// Their answers reach clients only through clientError: a remote error is
// never relayed as it came (STYLE.md §3). What a client may learn is the
// answer's meaning for the request, in this server's words:
//
//   - 404 or M_NOT_FOUND: the thing does not exist, 404 M_NOT_FOUND;
//   - 403 M_FORBIDDEN (a server that does not disclose profiles or its
//     directory over federation, as the spec allows): 403 M_FORBIDDEN;
//   - any other answer (other errcodes tell the client nothing true about
//     its query), no answer at all (federation.ErrUnreachable) or none in
//     queryTimeout: 502 M_UNKNOWN naming the server. Synapse answers 502
//     when it cannot reach the other server too; a 404 would tell the
//     client that the alias or user does not exist, which this server
//     does not know;
//   - a server name the federation client refuses: 400 M_INVALID_PARAM
//     (federation.Relayable, which decides for errors that are not
//     answers).
//
// Unlike federation.Relayable, the remote's own message is never shown:
// the client gets this server's words for what the answer means.
//
// Nothing is cached here: an alias lookup happens once per join or per
// client's question, and a directory page is paged by the remote's
// tokens. user caches remote profiles for a few minutes.

// queryTimeout bounds a query to another server made while a client waits.
const queryTimeout = 30 * time.Second

// Remote is what the directory asks of other servers: *federation.Client.
type Remote interface {
	QueryDirectory(ctx context.Context, dest string, alias id.RoomAlias) (*federation.DirectoryResponse, error)
	PublicRooms(ctx context.Context, dest string, req federation.PublicRoomsRequest) (json.RawMessage, error)
}

var _ Remote = (*federation.Client)(nil)

// ProfileRemote is what RemoteProfiles asks of other servers:
// *federation.Client.
type ProfileRemote interface {
	QueryProfile(ctx context.Context, dest string, userID id.UserID, field string) (*federation.ProfileResponse, error)
}

var _ ProfileRemote = (*federation.Client)(nil)

// remoteAnswers are the client errors a remote answer may become: nil
// entries fall back to the 502.
type remoteAnswers struct {
	notFound  *mxerr.Error
	forbidden *mxerr.Error
}

// clientError turns the error of a query to dest into what the client
// sees (see the comment at the top of this file). A cancelled request
// stays a context error, for the API edge to drop quietly.
func clientError(ctx context.Context, log *slog.Logger, dest, what string, err error, a remoteAnswers) error {
	if ctx.Err() != nil {
		return err
	}
	var re *federation.RemoteError
	if errors.As(err, &re) {
		switch {
		case a.notFound != nil && (re.Status == http.StatusNotFound || re.ErrCode == "M_NOT_FOUND"):
			return a.notFound
		case a.forbidden != nil && re.Status == http.StatusForbidden && re.ErrCode == "M_FORBIDDEN":
			return a.forbidden
		}
	}
	if errors.Is(err, federation.ErrInvalidServerName) {
		return federation.Relayable(err)
	}
	if log != nil {
		log.Warn("query of another server failed", "destination", dest, "query", what, "err", err)
	}
	if re != nil {
		return mxerr.Unknown("%s answered the %s query with an error (HTTP %d)", dest, what, re.Status).WithStatus(http.StatusBadGateway)
	}
	if errors.Is(err, federation.ErrUnreachable) || errors.Is(err, context.DeadlineExceeded) {
		return mxerr.Unknown("%s could not be reached", dest).WithStatus(http.StatusBadGateway)
	}
	return mxerr.Unknown("%s did not answer the %s query", dest, what).WithStatus(http.StatusBadGateway)
}

// resolveRemoteAlias asks the alias's server for the room it names. The
// answer's servers are checked and deduplicated; the alias's server comes
// first if the answer leaves it out, as it knows the room. Errors:
// M_NOT_FOUND, and a 502 when the server has no usable answer.
func (s *Service) resolveRemoteAlias(ctx context.Context, alias id.RoomAlias) (id.RoomID, []string, error) {
	_, server, _ := strings.Cut(string(alias), ":")
	if s.cfg.Remote == nil {
		return "", nil, needsFederation("Resolving aliases of other servers")
	}
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	res, err := s.cfg.Remote.QueryDirectory(qctx, server, alias)
	if err != nil {
		return "", nil, clientError(ctx, s.log, server, "directory", err, remoteAnswers{
			notFound: mxerr.NotFound("Room alias %s not found", alias),
		})
	}
	if !validRoomID(res.RoomID) {
		return "", nil, clientError(ctx, s.log, server, "directory", errors.New("answer without a valid room_id"), remoteAnswers{})
	}
	servers := []string{}
	for _, v := range res.Servers {
		if validServerName(v) && !slices.Contains(servers, v) {
			servers = append(servers, v)
		}
	}
	if !slices.Contains(servers, server) {
		servers = append([]string{server}, servers...)
	}
	return res.RoomID, servers, nil
}

// validRoomID checks the shape of a room ID from another server: '!' and
// at most 255 bytes (room IDs of version 12 have no domain).
func validRoomID(r id.RoomID) bool {
	return len(r) > 1 && len(r) <= 255 && r[0] == '!'
}

// remotePublicRooms asks server for its published room directory and
// passes on what a client may see of the answer: chunk entries are
// decoded one by one into PublicRoom (unknown members dropped, entries
// that do not decode or have no valid room ID skipped, an avatar_url that
// is no mxc:// URI and a malformed canonical_alias dropped), the
// pagination tokens are the remote's and return to it as since. At most
// limit entries are passed on if the remote sends more.
func (s *Service) remotePublicRooms(ctx context.Context, server string, req PublicRoomsRequest) (*PublicRoomsResponse, error) {
	if !validServerName(server) {
		return nil, mxerr.InvalidParam("Invalid server name %q", server)
	}
	if s.cfg.Remote == nil {
		return nil, needsFederation("Listing the room directory of another server")
	}
	freq := federation.PublicRoomsRequest{
		Since:                req.Since,
		IncludeAllNetworks:   req.IncludeAllNetworks,
		ThirdPartyInstanceID: req.ThirdPartyInstanceID,
	}
	if req.Limit != nil {
		freq.Limit = *req.Limit
	}
	if req.Filter != nil {
		f, err := json.Marshal(req.Filter)
		if err != nil {
			return nil, err
		}
		freq.Filter = f
	}
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	raw, err := s.cfg.Remote.PublicRooms(qctx, server, freq)
	if err != nil {
		return nil, clientError(ctx, s.log, server, "publicRooms", err, remoteAnswers{
			forbidden: mxerr.Forbidden("%s does not share its room directory with this server", server),
		})
	}
	var page struct {
		Chunk     []json.RawMessage `json:"chunk"`
		NextBatch json.RawMessage   `json:"next_batch"`
		PrevBatch json.RawMessage   `json:"prev_batch"`
		Total     json.RawMessage   `json:"total_room_count_estimate"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return nil, clientError(ctx, s.log, server, "publicRooms", err, remoteAnswers{})
	}
	out := &PublicRoomsResponse{Chunk: []PublicRoom{}}
	for _, c := range page.Chunk {
		if req.Limit != nil && *req.Limit > 0 && len(out.Chunk) >= *req.Limit {
			break
		}
		var r PublicRoom
		if json.Unmarshal(c, &r) != nil || !validRoomID(r.RoomID) {
			continue
		}
		if r.AvatarURL != "" && !user.ValidMXC(r.AvatarURL) {
			r.AvatarURL = ""
		}
		if r.CanonicalAlias != "" {
			if _, err := ParseAlias(r.CanonicalAlias); err != nil {
				r.CanonicalAlias = ""
			}
		}
		r.NumJoinedMembers = max(r.NumJoinedMembers, 0)
		out.Chunk = append(out.Chunk, r)
	}
	// Tokens and the estimate are optional: a value of the wrong type is
	// left out rather than failing the page.
	_ = json.Unmarshal(page.NextBatch, &out.NextBatch)
	_ = json.Unmarshal(page.PrevBatch, &out.PrevBatch)
	if json.Unmarshal(page.Total, &out.TotalRoomCountEstimate) != nil || out.TotalRoomCountEstimate < 0 {
		out.TotalRoomCountEstimate = 0
	}
	return out, nil
}

// RemoteProfiles returns the lookup of other servers' users' profiles that
// user.Config.RemoteProfile takes. It lives here, not in user, because
// user ranks below federation. Only displayname and avatar_url come back:
// federation.ProfileResponse has no other fields. Errors: M_NOT_FOUND for
// a user or field the remote does not have, M_FORBIDDEN when it does not
// disclose profiles, a 502 otherwise.
func RemoteProfiles(r ProfileRemote, log *slog.Logger) user.RemoteProfileFunc {
	return func(ctx context.Context, u id.UserID, field string) (map[string]json.RawMessage, error) {
		dest := u.Homeserver()
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		defer cancel()
		p, err := r.QueryProfile(qctx, dest, u, field)
		if err != nil {
			return nil, clientError(ctx, log, dest, "profile", err, remoteAnswers{
				notFound:  mxerr.NotFound("Profile of %s not found", u),
				forbidden: mxerr.Forbidden("%s does not disclose the profile of %s", dest, u),
			})
		}
		out := map[string]json.RawMessage{}
		if p.DisplayName != nil && *p.DisplayName != "" {
			out[user.FieldDisplayName], _ = json.Marshal(*p.DisplayName)
		}
		if p.AvatarURL != nil && user.ValidMXC(*p.AvatarURL) {
			out[user.FieldAvatarURL], _ = json.Marshal(*p.AvatarURL)
		}
		if field != "" {
			// The remote must answer only the field asked for.
			for k := range out {
				if k != field {
					delete(out, k)
				}
			}
		}
		return out, nil
	}
}
