package directory

import (
	"context"
	"sort"
	"strings"
	"unicode"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/user"
)

// User directory limits.
const (
	DefaultUserLimit = 10
	maxUserLimit     = 100
)

// UserSearchResponse is the answer of POST /user_directory/search.
type UserSearchResponse struct {
	Results []UserResult `json:"results"`
	Limited bool         `json:"limited"`
}

// UserResult is a user found in the directory.
type UserResult struct {
	UserID      id.UserID `json:"user_id"`
	DisplayName string    `json:"display_name,omitempty"`
	AvatarURL   string    `json:"avatar_url,omitempty"`
}

// SearchUsers searches the user directory (client-server API, "User
// directory") for the users visible to who: those who share a room with it
// and those joined to rooms with a public join rule or world_readable
// history. Deactivated users and who itself are left out.
//
// The term is split into words (runs of letters and digits); a user
// matches when each word begins a word of its display name or of its user
// ID, ignoring case. Results are ranked: an exact match of the whole term
// (display name, localpart or user ID), then a prefix match of it, then
// word matches; ties go to users who share a room with who, then to users
// with a display name and an avatar, then by user ID. limit defaults to
// DefaultUserLimit and is capped at 100. M_INVALID_PARAM for a negative
// limit.
func (s *Service) SearchUsers(ctx context.Context, who user.Identity, term string, limit *int) (*UserSearchResponse, error) {
	n := DefaultUserLimit
	if limit != nil {
		if *limit < 0 {
			return nil, mxerr.InvalidParam("limit must not be negative")
		}
		n = min(*limit, maxUserLimit)
	}
	out := &UserSearchResponse{Results: []UserResult{}}
	words := searchWords(term)
	if len(words) == 0 {
		return out, nil
	}
	// Narrow the rows in SQL by the ASCII words: SQL's lower() folds
	// ASCII only, on SQLite.
	var contains []string
	for _, w := range words {
		if isASCII(w) {
			contains = append(contains, w)
		}
	}
	users, err := s.db.DirectoryUsers(ctx, who.UserID, s.cfg.ServerName, contains)
	if err != nil {
		return nil, err
	}
	whole := strings.ToLower(strings.TrimSpace(term))
	type ranked struct {
		r     UserResult
		score int
		prio  int
	}
	var found []ranked
	for _, u := range users {
		if u.UserID == who.UserID {
			continue // not oneself, as Synapse (Complement TestRoomSpecificUsernameChange)
		}
		name := strings.ToLower(u.DisplayName)
		local := strings.ToLower(u.UserID.Localpart())
		uid := strings.ToLower(string(u.UserID))
		tokens := append(searchWords(u.DisplayName), searchWords(string(u.UserID))...)
		if !allPrefix(words, tokens) {
			continue
		}
		score := 2
		switch {
		case name == whole || local == whole || uid == whole || "@"+local == whole:
			score = 0
		case strings.HasPrefix(name, whole) || strings.HasPrefix(local, whole) || strings.HasPrefix(uid, whole):
			score = 1
		}
		prio := 0
		if !u.Shared {
			prio += 4
		}
		if u.DisplayName == "" {
			prio += 2
		}
		if u.AvatarURL == "" {
			prio++
		}
		found = append(found, ranked{r: UserResult{UserID: u.UserID, DisplayName: u.DisplayName, AvatarURL: u.AvatarURL}, score: score, prio: prio})
	}
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i], found[j]
		if a.score != b.score {
			return a.score < b.score
		}
		if a.prio != b.prio {
			return a.prio < b.prio
		}
		return a.r.UserID < b.r.UserID
	})
	if len(found) > n {
		found, out.Limited = found[:n], true
	}
	for _, f := range found {
		out.Results = append(out.Results, f.r)
	}
	return out, nil
}

// searchWords splits s into lower-cased words: runs of letters and digits.
func searchWords(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// allPrefix reports whether every word begins one of the tokens.
func allPrefix(words, tokens []string) bool {
	for _, w := range words {
		ok := false
		for _, t := range tokens {
			if strings.HasPrefix(t, w) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
