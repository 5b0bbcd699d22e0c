package cjson

import (
	"bytes"
	"errors"
	"iter"
	"unicode/utf8"
)

// The functions in this file read JSON that this package wrote (canonical:
// no whitespace, sorted keys, known escapes). They never panic on other
// input, but their results are then unspecified.

// Members iterates over the members of the canonical JSON object obj in
// order, yielding each member's encoded key (without the quotes, still
// escaped) and its value. It yields nothing if obj is not an object.
func Members(obj []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func(key, value []byte) bool) {
		if len(obj) < 2 || obj[0] != '{' {
			return
		}
		i := 1
		for i < len(obj) && obj[i] == '"' {
			keyEnd := skipString(obj, i)
			if keyEnd >= len(obj) || obj[keyEnd] != ':' {
				return
			}
			valStart := keyEnd + 1
			valEnd := SkipValue(obj, valStart)
			if valEnd <= valStart || !yield(obj[i+1:keyEnd-1], obj[valStart:valEnd]) {
				return
			}
			i = valEnd
			if i < len(obj) && obj[i] == ',' {
				i++
			}
		}
	}
}

// Elements iterates over the elements of the canonical JSON array arr. It
// yields nothing if arr is not an array.
func Elements(arr []byte) iter.Seq[[]byte] {
	return func(yield func(value []byte) bool) {
		if len(arr) < 2 || arr[0] != '[' {
			return
		}
		i := 1
		for i < len(arr) && arr[i] != ']' {
			end := SkipValue(arr, i)
			if end <= i || !yield(arr[i:end]) {
				return
			}
			i = end
			if i < len(arr) && arr[i] == ',' {
				i++
			}
		}
	}
}

// Get returns the value of the member named key of the canonical JSON
// object obj, and whether it exists. key is compared with the encoded key.
func Get(obj []byte, key string) ([]byte, bool) {
	for k, v := range Members(obj) {
		if string(k) == key {
			return v, true
		}
	}
	return nil, false
}

// SkipValue returns the index just after the canonical JSON value that
// starts at b[i], or len(b) if it is not terminated.
func SkipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
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
	default: // number or literal
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ':':
				return i
			}
			i++
		}
		return i
	}
}

// skipString returns the index just after the string that starts with the
// quote at b[i]: the first quote not preceded by an odd number of
// backslashes.
func skipString(b []byte, i int) int {
	i++
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			break
		}
		i += j
		n := 0
		for k := i - 1; b[k] == '\\'; k-- { // stops at the opening quote
			n++
		}
		if n%2 == 0 {
			return i + 1
		}
		i++
	}
	return len(b)
}

// ErrNotString is returned by Unquote for a value that is not a string.
var ErrNotString = errors.New("not a JSON string")

// Unquote decodes the canonical JSON string literal s (with its quotes).
func Unquote(s []byte) (string, error) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", ErrNotString
	}
	body := s[1 : len(s)-1]
	esc := false
	for _, c := range body {
		if c == '\\' {
			esc = true
			break
		}
	}
	if !esc {
		return string(body), nil
	}
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); {
		if body[i] != '\\' {
			out = append(out, body[i])
			i++
			continue
		}
		if i+1 >= len(body) {
			return "", ErrNotString
		}
		switch body[i+1] {
		case 'u':
			u, ok := hex4(body, i+2)
			if !ok || utf16IsSurrogate(rune(u)) {
				return "", ErrNotString
			}
			out = utf8.AppendRune(out, rune(u))
			i += 6
		default:
			c := simpleEscapes[body[i+1]]
			if c == 0 {
				return "", ErrNotString
			}
			out = append(out, c)
			i += 2
		}
	}
	return string(out), nil
}

// AppendString appends s to dst as a canonical JSON string literal. Invalid
// UTF-8 in s is written as U+FFFD.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				start := i
				for i < len(s) && s[i] < utf8.RuneSelf && safeASCII[s[i]] {
					i++
				}
				dst = append(dst, s[start:i]...)
				continue
			}
			dst = appendStringRune(dst, rune(c))
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		dst = utf8.AppendRune(dst, r)
		i += size
	}
	return append(dst, '"')
}

// Set returns a copy of the canonical JSON object obj, appended to dst, with
// the member named key set to value (replacing it or inserting it in key
// order). value must itself be canonical JSON. If obj is not an object the
// result is the object {key: value}.
func Set(dst, obj []byte, key string, value []byte) []byte {
	var kbuf [64]byte
	enc := AppendString(kbuf[:0], key)
	encKey := enc[1 : len(enc)-1]
	dst = append(dst, '{')
	n := 0
	written := false
	for k, v := range Members(obj) {
		c := compareEscaped(k, encKey)
		if !written && c >= 0 {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(append(append(dst, enc...), ':'), value...)
			n++
			written = true
			if c == 0 {
				continue
			}
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(append(append(append(dst, '"'), k...), '"', ':'), v...)
		n++
	}
	if !written {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(append(append(dst, enc...), ':'), value...)
	}
	return append(dst, '}')
}

// Without returns a copy of the canonical JSON object obj, appended to dst,
// without the members whose encoded keys are listed. If obj is not an
// object the result is {}.
func Without(dst, obj []byte, keys ...string) []byte {
	dst = append(dst, '{')
	n := 0
members:
	for k, v := range Members(obj) {
		for _, drop := range keys {
			if string(k) == drop {
				continue members
			}
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(append(append(append(dst, '"'), k...), '"', ':'), v...)
		n++
	}
	return append(dst, '}')
}
