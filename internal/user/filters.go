package user

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// CreateFilter checks a filter (spec: POST /user/{userId}/filter, schema
// definitions/sync_filter.yaml), stores it for the user and returns its ID.
// Uploading the same filter again returns the same ID. Errors: M_NOT_JSON,
// M_BAD_JSON for a member of the wrong type, M_INVALID_PARAM for a bad
// value (a limit below 1, an ID that is not a user or room ID, an unknown
// event_format).
func (s *Service) CreateFilter(ctx context.Context, userID id.UserID, filter []byte) (string, error) {
	if err := CheckFilter(filter); err != nil {
		return "", err
	}
	// Stored in canonical form so that the same filter is recognised
	// however it was written. Legacy mode keeps numbers that are not
	// integers (a filter has none of its own, but may carry extensions).
	canon, err := cjson.CanonicalLegacy(filter)
	if err != nil {
		return "", mxerr.BadJSON("Filter is not valid JSON: %v", err)
	}
	fid, err := s.db.CreateFilter(ctx, userID, canon)
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(fid, 10), nil
}

// Filter returns a filter the user uploaded, or store.ErrNotFound (also
// for an ID that is not one this server hands out).
func (s *Service) Filter(ctx context.Context, userID id.UserID, filterID string) ([]byte, error) {
	fid, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil || fid < 0 || strconv.FormatInt(fid, 10) != filterID {
		return nil, store.ErrNotFound
	}
	return s.db.Filter(ctx, userID, fid)
}

// UploadFilter is POST /user/{userId}/filter. Errors: M_FORBIDDEN for
// another user, and those of CreateFilter.
func (s *Service) UploadFilter(ctx context.Context, who Identity, userID id.UserID, filter []byte) (string, error) {
	if who.UserID != userID {
		return "", mxerr.Forbidden("Cannot create filters for other users")
	}
	return s.CreateFilter(ctx, userID, filter)
}

// GetFilter is GET /user/{userId}/filter/{filterId}. Errors: M_FORBIDDEN
// for another user, M_NOT_FOUND for an unknown filter.
func (s *Service) GetFilter(ctx context.Context, who Identity, userID id.UserID, filterID string) ([]byte, error) {
	if who.UserID != userID {
		return nil, mxerr.Forbidden("Cannot get filters for other users")
	}
	f, err := s.Filter(ctx, userID, filterID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("No such filter")
	}
	return f, err
}

// CheckFilter checks a filter against the spec's schema (Filter,
// RoomFilter, EventFilter, RoomEventFilter): members of the wrong type are
// M_BAD_JSON, bad values M_INVALID_PARAM. Unknown members are allowed, as
// the schema allows them. /sync uses it for inline filters too.
func CheckFilter(raw []byte) error {
	obj, err := object(raw, "filter")
	if err != nil {
		if !json.Valid(raw) {
			return mxerr.NotJSON("Filter is not valid JSON")
		}
		return err
	}
	for k, v := range obj {
		switch k {
		case "event_fields":
			if _, err := stringArray(v, k); err != nil {
				return err
			}
		case "event_format":
			var f string
			if json.Unmarshal(v, &f) != nil {
				return mxerr.BadJSON("event_format must be a string")
			}
			if f != "client" && f != "federation" {
				return mxerr.InvalidParam("event_format must be client or federation")
			}
		case "presence", "account_data":
			if err := checkEventFilter(v, k, false); err != nil {
				return err
			}
		case "room":
			if err := checkRoomFilter(v); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkRoomFilter(raw []byte) error {
	obj, err := object(raw, "room")
	if err != nil {
		return err
	}
	for k, v := range obj {
		path := "room." + k
		switch k {
		case "rooms", "not_rooms":
			if err := idArray(v, path, '!'); err != nil {
				return err
			}
		case "include_leave":
			if err := boolean(v, path); err != nil {
				return err
			}
		case "ephemeral", "state", "timeline", "account_data":
			if err := checkEventFilter(v, path, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkEventFilter checks an EventFilter, or a RoomEventFilter when inRoom.
func checkEventFilter(raw []byte, path string, inRoom bool) error {
	obj, err := object(raw, path)
	if err != nil {
		return err
	}
	for k, v := range obj {
		p := path + "." + k
		switch k {
		case "limit":
			var f float64
			if json.Unmarshal(v, &f) != nil {
				return mxerr.BadJSON("%s must be an integer", p)
			}
			if f != math.Trunc(f) || f < 1 || f > math.MaxInt32 {
				return mxerr.InvalidParam("%s must be an integer greater than 0", p)
			}
		case "types", "not_types":
			if _, err := stringArray(v, p); err != nil {
				return err
			}
		case "senders", "not_senders":
			if err := idArray(v, p, '@'); err != nil {
				return err
			}
		}
		if !inRoom {
			continue
		}
		switch k {
		case "rooms", "not_rooms":
			if err := idArray(v, p, '!'); err != nil {
				return err
			}
		case "contains_url", "lazy_load_members", "include_redundant_members", "unread_thread_notifications":
			if err := boolean(v, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func object(raw []byte, path string) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, mxerr.BadJSON("%s must be an object", path)
	}
	return obj, nil
}

func stringArray(raw []byte, path string) ([]string, error) {
	var ss []string
	if err := json.Unmarshal(raw, &ss); err != nil || ss == nil {
		return nil, mxerr.BadJSON("%s must be an array of strings", path)
	}
	return ss, nil
}

// idArray checks an array of user IDs (sigil '@') or room IDs ('!').
func idArray(raw []byte, path string, sigil byte) error {
	ss, err := stringArray(raw, path)
	if err != nil {
		return err
	}
	for _, s := range ss {
		ok := false
		if sigil == '@' {
			ok = validUserID(s)
		} else {
			ok = validRoomID(id.RoomID(s))
		}
		if !ok {
			return mxerr.InvalidParam("%s: %q is not a %s ID", path, s, map[byte]string{'@': "user", '!': "room"}[sigil])
		}
	}
	return nil
}

func boolean(raw []byte, path string) error {
	var b *bool
	if err := json.Unmarshal(raw, &b); err != nil || b == nil {
		return mxerr.BadJSON("%s must be a boolean", path)
	}
	return nil
}
