package eventauth

import (
	"bytes"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Content is read with encoding/json/v2: its member names are matched
// case-sensitively (v1 would take "Membership" for "membership"). Every field
// is kept as a raw jsontext.Value and interpreted by the rule that reads it,
// so that a field of the wrong type makes that rule fail instead of the whole
// content failing to decode. Duplicate names are tolerated (the last wins):
// whether such an event is valid at all is for the event format layer.
var decodeOpts = json.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// decode reads content as a T. Content that is not a JSON object gives the
// zero T: the rules then see no properties at all.
func decode[T any](content []byte) T {
	var v T
	if len(content) == 0 {
		return v
	}
	if err := json.Unmarshal(content, &v, decodeOpts); err != nil {
		var zero T
		return zero
	}
	return v
}

// present reports whether a property exists (null counts as present).
func present(v jsontext.Value) bool { return len(v) > 0 }

// str returns the value of a JSON string.
func str(v jsontext.Value) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	// Fast path: no escapes.
	if i := bytes.IndexByte(v[1:], '\\'); i < 0 && len(v) >= 2 && v[len(v)-1] == '"' {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if err := json.Unmarshal(v, &s, decodeOpts); err != nil {
		return "", false
	}
	return s, true
}

func isObject(v jsontext.Value) bool { return len(v) > 0 && v[0] == '{' }

func object(v jsontext.Value) (map[string]jsontext.Value, bool) {
	if !isObject(v) {
		return nil, false
	}
	var m map[string]jsontext.Value
	if err := json.Unmarshal(v, &m, decodeOpts); err != nil {
		return nil, false
	}
	return m, true
}

const maxSafeInteger = 1<<53 - 1 // canonical JSON's integer range (appendix)

// parseLevel reads a power level value under the rules of room version n:
//
//   - v1–9 accept strings holding an integer ("v1-stringy-power-levels"): a
//     base 10 integer with an optional single sign, optional leading zeros
//     and optional leading and trailing whitespace.
//   - v1–5 accept floats, truncated toward zero after applying the exponent
//     ("v1-floaty-power-levels"); floats outside binary64 range are an
//     error (outOfRange is then true and the power levels event is
//     rejected).
//   - v6+ numbers follow canonical JSON (v6 "Canonical JSON"): an integer in
//     [-(2^53)+1, (2^53)-1]. A number written with a fraction or exponent is
//     that integer when its value is one ("1e10", as in the appendix's
//     examples; "50.0"), and invalid otherwise.
//   - v10+ accept only numbers (MSC3667).
//
// Levels beyond int64 (possible in v1–5 events and v1–9 strings) saturate
// at math.MinInt64/math.MaxInt64: comparisons between two such levels are
// then not exact (Python, which Synapse uses, has unbounded integers).
func parseLevel(n int, v jsontext.Value) (level int64, ok, outOfRange bool) {
	if len(v) == 0 {
		return 0, false, false
	}
	switch c := v[0]; {
	case c == '-' || (c >= '0' && c <= '9'):
		return parseNumberLevel(n, string(v))
	case c == '"':
		if n >= 10 {
			return 0, false, false
		}
		s, ok := str(v)
		if !ok {
			return 0, false, false
		}
		l, ok := parseStringLevel(s)
		return l, ok, false
	}
	return 0, false, false
}

func parseNumberLevel(n int, s string) (int64, bool, bool) {
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			if n <= 5 && isRangeErr(err) {
				return saturate(s[0] == '-'), true, false
			}
			return 0, false, false
		}
		if n >= 6 && (i > maxSafeInteger || i < -maxSafeInteger) {
			return 0, false, false
		}
		return i, true, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		// ParseFloat reports values beyond binary64 as a range error.
		return 0, false, n <= 5
	}
	t := math.Trunc(f)
	if n >= 6 {
		if t != f || t > maxSafeInteger || t < -maxSafeInteger {
			return 0, false, false
		}
		return int64(t), true, false
	}
	if t >= math.MaxInt64 || t <= math.MinInt64 {
		return saturate(t < 0), true, false
	}
	return int64(t), true, false
}

func parseStringLevel(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	digits := s
	if len(digits) > 0 && (digits[0] == '+' || digits[0] == '-') {
		digits = digits[1:]
	}
	if digits == "" {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.ParseInt(s, 10, 64) // accepts one leading sign, leading zeros
	if err != nil {
		if isRangeErr(err) {
			return saturate(s[0] == '-'), true
		}
		return 0, false
	}
	return i, true
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func saturate(negative bool) int64 {
	if negative {
		return math.MinInt64
	}
	return math.MaxInt64
}

// serverOf returns the domain of a user ID, room ID or (v1–2) event ID: what
// follows the first colon, or "" when there is none.
func serverOf(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[i+1:]
	}
	return ""
}

// validUserID reports whether s is a user ID under the grammar that must be
// accepted over federation (appendix "User Identifiers" and "Historical User
// IDs"): "@", a localpart of any Unicode code points but ':' and NUL
// (possibly empty), ":", a server name; 255 bytes at most.
func validUserID(s string) bool {
	if len(s) > 255 || len(s) < 3 || s[0] != '@' {
		return false
	}
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return false
	}
	local := s[1:i]
	if strings.IndexByte(local, 0) >= 0 || !utf8.ValidString(local) {
		return false
	}
	return validServerName(s[i+1:])
}

// validServerName checks the grammar of appendix "Server Name":
// hostname [":" port], hostname being an IPv4 literal, "[" IPv6 "]" or a DNS
// name of 1 to 255 letters, digits, '-' and '.'.
func validServerName(s string) bool {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		host, port = s[:end+1], s[end+1:]
		inner := host[1 : len(host)-1]
		if len(inner) < 2 || len(inner) > 45 {
			return false
		}
		for i := 0; i < len(inner); i++ {
			c := inner[i]
			if !(isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.') {
				return false
			}
		}
	} else {
		if i := strings.IndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i:]
		}
		if len(host) < 1 || len(host) > 255 {
			return false
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !(isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'z') || c == '-' || c == '.') {
				return false
			}
		}
	}
	if port != "" {
		p := port[1:]
		if port[0] != ':' || len(p) < 1 || len(p) > 5 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return false
			}
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func array(v jsontext.Value) ([]jsontext.Value, bool) {
	if len(v) == 0 || v[0] != '[' {
		return nil, false
	}
	var a []jsontext.Value
	if err := json.Unmarshal(v, &a, decodeOpts); err != nil {
		return nil, false
	}
	return a, true
}

// member returns the raw value of the member named key in obj, or nil when
// there is none; of duplicate members the last wins, as when decoding.
func member(obj []byte, key string) []byte {
	var found []byte
	members(obj, func(name, value []byte) {
		if nameIs(name, key) {
			found = value
		}
	})
	return found
}

// members calls fn with the name (quoted, as written) and raw value of each
// member of the JSON object obj, in order. obj should be valid JSON (a
// value decode returned, or the content of a parsed event): members only
// skips over it, without allocating. On invalid input it may stop early or
// pass wrong values, but it does not panic or loop.
func members(obj []byte, fn func(name, value []byte)) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	i++
	for i < len(obj) {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] == '}' {
			return
		}
		if obj[i] == ',' {
			i++
			continue
		}
		if obj[i] != '"' {
			return
		}
		end := skipString(obj, i)
		name := obj[i:end]
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		i = skipSpace(obj, i+1)
		vend := skipValue(obj, i)
		if vend <= i {
			return
		}
		fn(name, obj[i:vend])
		i = vend
	}
}

// nameIs reports whether the JSON string name (with its quotes) is key.
func nameIs(name []byte, key string) bool {
	if len(name) < 2 {
		return false
	}
	inner := name[1 : len(name)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == key
	}
	s, ok := str(name)
	return ok && s == key
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}
