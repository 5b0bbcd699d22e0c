// Package cjson implements Matrix canonical JSON (spec appendix "Signing
// JSON" § "Canonical JSON"): the shortest UTF-8 encoding, object keys sorted
// by Unicode code point, no insignificant whitespace, only the escapes the
// grammar allows, and integers in [-(2^53)+1, (2^53)-1] only.
//
// It is on every hot path (hashing, signing, event IDs), so it is a single
// pass over the input that writes its output as it reads and sorts object
// members in place only when they are out of order. It uses the standard
// library only and may be imported by any package.
//
// Three modes exist:
//
//   - Strict (Canonical, Append with Strict) is the encoding of the appendix.
//     As in the appendix's examples, a number written with a fraction or an
//     exponent is accepted when its value is an integer in range and is
//     written as that integer ("-0" → "0", "1e10" → "10000000000",
//     "1.0" → "1"); any other number is an error.
//   - Integers (Append with Integers) is Strict without that leniency: a
//     number must be written as an integer ("-0" is still read as 0). This
//     is how Synapse (Python ints vs floats) and ruma (js_int) read events
//     of room versions 6 and later, so events use this mode.
//   - Legacy (CanonicalLegacy, Append with Legacy) is for room versions 1–5,
//     whose events "might not be fully compliant" (appendix warning; room
//     version 1 "Canonical JSON"). It reproduces what Synapse, which made most
//     events in such rooms, hashed and signed: integers of any size are kept
//     as written (except "-0" → "0"), and a number written with a fraction or
//     an exponent is a float64 written as Python's repr writes it ("1.5",
//     "10000000000.0", "1e+16", "1e-05"). A number whose float64 value is
//     infinite is an error, as it is for Python's encoder.
//
// All modes reject invalid JSON, invalid UTF-8, escapes of lone UTF-16
// surrogates (they have no UTF-8 form), duplicate object keys (parsers that
// keep the first and those that keep the last would see different events),
// and nesting deeper than MaxDepth.
package cjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of objects and arrays accepted. Python's
// JSON decoder, used by Synapse, stops near 1000 levels as well.
const MaxDepth = 1000

// Mode selects how numbers are checked and written.
type Mode uint8

const (
	// Strict is canonical JSON as the appendix defines it: integers in
	// [-(2^53)+1, (2^53)-1] only. Room versions 6 and later.
	Strict Mode = iota
	// Integers is Strict, but numbers written with a fraction or an
	// exponent are errors even when their value is an integer. Events of
	// room versions 6 and later.
	Integers
	// Legacy accepts any number and writes floats as Python does. Room
	// versions 1–5.
	Legacy
)

// SyntaxError reports invalid or non-canonicalisable input and where it was
// found.
type SyntaxError struct {
	Offset int // byte offset in the input
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("canonical json: %s at offset %d", e.Msg, e.Offset)
}

// ErrDepth is wrapped by the error returned for input nested deeper than
// MaxDepth.
var ErrDepth = errors.New("nesting too deep")

// Canonical returns raw re-encoded as strict canonical JSON. It returns a
// *SyntaxError if raw is not valid JSON or holds a number that is not an
// integer in range.
func Canonical(raw []byte) ([]byte, error) {
	return Append(make([]byte, 0, len(raw)), raw, Strict)
}

// CanonicalLegacy returns raw re-encoded as canonical JSON in Legacy mode (room
// versions 1–5). It returns a *SyntaxError if raw is not valid JSON.
func CanonicalLegacy(raw []byte) ([]byte, error) {
	return Append(make([]byte, 0, len(raw)), raw, Legacy)
}

// Append appends the canonical form of raw to dst in the given mode and
// returns the extended buffer. On error dst is returned unchanged in length
// (its spare capacity may have been written).
func Append(dst, raw []byte, mode Mode) ([]byte, error) {
	e := encoderPool.Get().(*encoder)
	e.in, e.pos, e.out, e.mode = raw, 0, dst, mode
	n := len(dst)
	err := e.value(0)
	if err == nil {
		e.skipSpace()
		if e.pos != len(e.in) {
			err = e.errorf("unexpected data after the top-level value")
		}
	}
	out := e.out
	e.in, e.out = nil, nil
	e.spans = e.spans[:0]
	if cap(e.scratch) > 1<<16 {
		e.scratch = nil
	}
	encoderPool.Put(e)
	if err != nil {
		return dst[:n], err
	}
	return out, nil
}

// Marshal returns the strict canonical JSON encoding of v, as encoding/json
// marshals it. Floats that are not integers are an error.
func Marshal(v any) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<16 {
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return Append(make([]byte, 0, buf.Len()), buf.Bytes(), Strict)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var encoderPool = sync.Pool{New: func() any { return new(encoder) }}

// encoder is the state of one Append call.
type encoder struct {
	in   []byte
	pos  int
	out  []byte
	mode Mode
	// spans is a stack of the members of the objects being encoded; each
	// object uses the entries it pushed and pops them when it ends.
	spans   []span
	scratch []byte
}

// span locates one encoded object member in the output.
type span struct {
	start  int  // the key's opening quote
	keyEnd int  // just after the key's closing quote
	end    int  // just after the value
	esc    bool // the encoded key holds an escape sequence
}

func (e *encoder) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: e.pos, Msg: fmt.Sprintf(format, args...)}
}

func (e *encoder) skipSpace() {
	for e.pos < len(e.in) {
		switch e.in[e.pos] {
		case ' ', '\t', '\n', '\r':
			e.pos++
		default:
			return
		}
	}
}

func (e *encoder) value(depth int) error {
	e.skipSpace()
	if e.pos >= len(e.in) {
		return e.errorf("unexpected end of input")
	}
	switch c := e.in[e.pos]; c {
	case '{':
		return e.object(depth + 1)
	case '[':
		return e.array(depth + 1)
	case '"':
		_, err := e.string()
		return err
	case 't':
		return e.literal("true")
	case 'f':
		return e.literal("false")
	case 'n':
		return e.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return e.number()
		}
		return e.errorf("invalid character %q looking for a value", c)
	}
}

func (e *encoder) literal(lit string) error {
	if len(e.in)-e.pos < len(lit) || string(e.in[e.pos:e.pos+len(lit)]) != lit {
		return e.errorf("invalid literal, want %s", lit)
	}
	e.pos += len(lit)
	e.out = append(e.out, lit...)
	return nil
}

func (e *encoder) array(depth int) error {
	if depth > MaxDepth {
		return &SyntaxError{Offset: e.pos, Msg: ErrDepth.Error()}
	}
	e.pos++ // [
	e.out = append(e.out, '[')
	e.skipSpace()
	if e.pos < len(e.in) && e.in[e.pos] == ']' {
		e.pos++
		e.out = append(e.out, ']')
		return nil
	}
	for {
		if err := e.value(depth); err != nil {
			return err
		}
		e.skipSpace()
		if e.pos >= len(e.in) {
			return e.errorf("unexpected end of input in array")
		}
		switch e.in[e.pos] {
		case ',':
			e.pos++
			e.out = append(e.out, ',')
		case ']':
			e.pos++
			e.out = append(e.out, ']')
			return nil
		default:
			return e.errorf("invalid character %q after array element", e.in[e.pos])
		}
	}
}

func (e *encoder) object(depth int) error {
	if depth > MaxDepth {
		return &SyntaxError{Offset: e.pos, Msg: ErrDepth.Error()}
	}
	e.pos++ // {
	e.out = append(e.out, '{')
	e.skipSpace()
	if e.pos < len(e.in) && e.in[e.pos] == '}' {
		e.pos++
		e.out = append(e.out, '}')
		return nil
	}
	base := len(e.spans)
	sorted := true
	for {
		e.skipSpace()
		if e.pos >= len(e.in) || e.in[e.pos] != '"' {
			return e.errorf("object key must be a string")
		}
		keyPos := e.pos
		start := len(e.out)
		esc, err := e.string()
		if err != nil {
			return err
		}
		sp := span{start: start, keyEnd: len(e.out), esc: esc}
		if n := len(e.spans); n > base {
			switch c := e.compareKeys(e.spans[n-1], sp); {
			case c == 0:
				e.pos = keyPos
				return e.errorf("duplicate object key %s", e.out[sp.start:sp.keyEnd])
			case c > 0:
				sorted = false
			}
		}
		e.skipSpace()
		if e.pos >= len(e.in) || e.in[e.pos] != ':' {
			return e.errorf("missing ':' after object key")
		}
		e.pos++
		e.out = append(e.out, ':')
		if err := e.value(depth); err != nil {
			return err
		}
		sp.end = len(e.out)
		e.spans = append(e.spans, sp)
		e.skipSpace()
		if e.pos >= len(e.in) {
			return e.errorf("unexpected end of input in object")
		}
		c := e.in[e.pos]
		if c == '}' {
			e.pos++
			break
		}
		if c != ',' {
			return e.errorf("invalid character %q after object member", c)
		}
		e.pos++
		e.out = append(e.out, ',')
	}
	members := e.spans[base:]
	if !sorted {
		if err := e.sortMembers(members); err != nil {
			return err
		}
	}
	e.spans = e.spans[:base]
	e.out = append(e.out, '}')
	return nil
}

// sortMembers reorders the encoded members of one object into key order. The
// members are contiguous in e.out, separated by single commas, so the sorted
// body has the same length and is copied back over the original.
func (e *encoder) sortMembers(members []span) error {
	bodyStart, bodyEnd := members[0].start, members[len(members)-1].end
	slices.SortFunc(members, e.compareKeys)
	for i := 1; i < len(members); i++ {
		if e.compareKeys(members[i-1], members[i]) == 0 {
			return e.errorf("duplicate object key %s", e.out[members[i].start:members[i].keyEnd])
		}
	}
	buf := e.scratch[:0]
	for i, m := range members {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e.out[m.start:m.end]...)
	}
	copy(e.out[bodyStart:bodyEnd], buf)
	e.scratch = buf
	return nil
}

// compareKeys compares two encoded keys by the code points of their decoded
// values. UTF-8 byte order is code point order, so unescaped keys compare as
// bytes; keys with escapes are decoded byte by byte as they are compared.
func (e *encoder) compareKeys(a, b span) int {
	ka := e.out[a.start+1 : a.keyEnd-1]
	kb := e.out[b.start+1 : b.keyEnd-1]
	if !a.esc && !b.esc {
		return bytes.Compare(ka, kb)
	}
	return compareEscaped(ka, kb)
}

// compareEscaped compares two canonical string bodies by their decoded bytes.
// Canonical escapes only encode single bytes below 0x80, so decoding one
// escape yields one byte.
func compareEscaped(a, b []byte) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ca, ni := decodeCanonicalByte(a, i)
		cb, nj := decodeCanonicalByte(b, j)
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
		i, j = ni, nj
	}
	switch {
	case i < len(a):
		return 1
	case j < len(b):
		return -1
	}
	return 0
}

// decodeCanonicalByte returns the byte at s[i], decoding an escape sequence
// written by this package, and the index after it.
func decodeCanonicalByte(s []byte, i int) (byte, int) {
	if s[i] != '\\' || i+1 >= len(s) {
		return s[i], i + 1
	}
	switch s[i+1] {
	case 'b':
		return '\b', i + 2
	case 't':
		return '\t', i + 2
	case 'n':
		return '\n', i + 2
	case 'f':
		return '\f', i + 2
	case 'r':
		return '\r', i + 2
	case 'u':
		if i+6 <= len(s) {
			return unhex(s[i+4])<<4 | unhex(s[i+5]), i + 6
		}
	}
	return s[i+1], i + 2 // \" and \\
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// safeASCII marks the ASCII bytes that are written as they are inside a
// canonical string.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// string encodes the string literal at e.pos. It reports whether the output
// holds an escape sequence.
func (e *encoder) string() (bool, error) {
	in := e.in
	i := e.pos + 1
	e.out = append(e.out, '"')
	escaped := false
	for {
		// Copy the longest run of bytes that need no attention.
		start := i
		for i < len(in) && in[i] < utf8.RuneSelf && safeASCII[in[i]] {
			i++
		}
		e.out = append(e.out, in[start:i]...)
		if i >= len(in) {
			e.pos = i
			return false, e.errorf("unexpected end of input in string")
		}
		c := in[i]
		switch {
		case c == '"':
			e.out = append(e.out, '"')
			e.pos = i + 1
			return escaped, nil
		case c == '\\':
			e.pos = i
			if i+1 >= len(in) {
				return false, e.errorf("unexpected end of input in escape")
			}
			var r rune
			switch esc := in[i+1]; esc {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r = rune(simpleEscapes[esc])
				i += 2
			case 'u':
				u, ok := hex4(in, i+2)
				if !ok {
					return false, e.errorf("invalid \\u escape")
				}
				i += 6
				r = rune(u)
				if utf16IsSurrogate(r) {
					if r >= 0xDC00 {
						return false, e.errorf("lone low surrogate \\u%04x", u)
					}
					lo, ok := uint16(0), false
					if i+1 < len(in) && in[i] == '\\' && in[i+1] == 'u' {
						lo, ok = hex4(in, i+2)
					}
					if !ok || lo < 0xDC00 || lo > 0xDFFF {
						return false, e.errorf("lone high surrogate \\u%04x", u)
					}
					i += 6
					r = 0x10000 + (r-0xD800)<<10 + (rune(lo) - 0xDC00)
				}
			default:
				return false, e.errorf("invalid escape character %q", esc)
			}
			if e.appendRune(r) {
				escaped = true
			}
		case c < 0x20:
			e.pos = i
			return false, e.errorf("control character 0x%02x in string", c)
		default: // c >= 0x80
			r, size := utf8.DecodeRune(in[i:])
			if r == utf8.RuneError && size <= 1 {
				e.pos = i
				return false, e.errorf("invalid UTF-8 in string")
			}
			e.out = append(e.out, in[i:i+size]...)
			i += size
		}
	}
}

var simpleEscapes = [256]byte{
	'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t',
}

func utf16IsSurrogate(r rune) bool { return r >= 0xD800 && r <= 0xDFFF }

// hex4 decodes the four hex digits at in[i:].
func hex4(in []byte, i int) (uint16, bool) {
	if i+4 > len(in) {
		return 0, false
	}
	var v uint16
	for _, c := range in[i : i+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint16(d)
	}
	return v, true
}

// appendRune writes r as it appears inside a canonical string and reports
// whether it wrote an escape sequence.
func (e *encoder) appendRune(r rune) bool {
	e.out = appendStringRune(e.out, r)
	return r < 0x20 || r == '"' || r == '\\'
}

func appendStringRune(out []byte, r rune) []byte {
	switch {
	case r == '"' || r == '\\':
		return append(out, '\\', byte(r))
	case r >= 0x20:
		return utf8.AppendRune(out, r)
	case r == '\b':
		return append(out, '\\', 'b')
	case r == '\t':
		return append(out, '\\', 't')
	case r == '\n':
		return append(out, '\\', 'n')
	case r == '\f':
		return append(out, '\\', 'f')
	case r == '\r':
		return append(out, '\\', 'r')
	default:
		return append(out, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xF])
	}
}
