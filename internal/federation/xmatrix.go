package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
)

// XMatrix is the content of an X-Matrix Authorization header
// (server-server API, "Request Authentication").
type XMatrix struct {
	Origin string
	// Destination is "" when the sender left it out (servers before spec
	// v1.3).
	Destination string
	Key         id.KeyID
	Sig         string // unpadded base64
}

// String formats x as senders should for older servers' sake: one space
// after the scheme, lower-case names, quoted values and no spaces around
// the commas.
func (x XMatrix) String() string {
	var b strings.Builder
	b.WriteString(`X-Matrix origin=`)
	writeQuoted(&b, x.Origin)
	if x.Destination != "" {
		b.WriteString(`,destination=`)
		writeQuoted(&b, x.Destination)
	}
	b.WriteString(`,key=`)
	writeQuoted(&b, string(x.Key))
	b.WriteString(`,sig=`)
	writeQuoted(&b, x.Sig)
	return b.String()
}

// writeQuoted writes s as a quoted-string. Server names, key IDs and
// base64 never hold '"' or '\', so nothing is escaped in practice.
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

// ParseXMatrix parses an Authorization header value with the X-Matrix
// scheme. It follows RFC 9110 §11.4 as the spec asks: the scheme is case
// insensitive and followed by one or more spaces, then name=value pairs
// separated by commas with optional spaces and tabs around them; names are
// case insensitive, values are tokens or quoted strings with backslash
// escapes, and unknown names are ignored. For older servers an unquoted
// value may hold colons (or anything but a comma or white space).
//
// origin, key and sig are required; destination is optional. A parameter
// given twice is an error.
func ParseXMatrix(header string) (XMatrix, error) {
	var x XMatrix
	scheme, params, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "X-Matrix") {
		return x, errors.New("X-Matrix: not an X-Matrix authorization")
	}
	seen := map[string]bool{}
	s := params
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			break
		}
		i := strings.IndexAny(s, "= \t,")
		if i <= 0 || !isToken(s[:i]) {
			return XMatrix{}, fmt.Errorf("X-Matrix: malformed parameter near %q", clip(s, 20))
		}
		name := strings.ToLower(s[:i])
		s = strings.TrimLeft(s[i:], " \t")
		if !strings.HasPrefix(s, "=") {
			return XMatrix{}, fmt.Errorf("X-Matrix: parameter %s has no value", name)
		}
		s = strings.TrimLeft(s[1:], " \t")
		var value string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			j, closed := 1, false
			for j < len(s) {
				c := s[j]
				j++
				if c == '"' {
					closed = true
					break
				}
				if c == '\\' && j < len(s) {
					c = s[j]
					j++
				}
				b.WriteByte(c)
			}
			if !closed {
				return XMatrix{}, fmt.Errorf("X-Matrix: unterminated quoted value of %s", name)
			}
			value, s = b.String(), s[j:]
		} else {
			j := strings.IndexAny(s, " \t,")
			if j < 0 {
				j = len(s)
			}
			value, s = s[:j], s[j:]
		}
		// Only white space may come before the next comma.
		s = strings.TrimLeft(s, " \t")
		if s != "" && s[0] != ',' {
			return XMatrix{}, fmt.Errorf("X-Matrix: unexpected %q after %s", clip(s, 20), name)
		}
		var dst *string
		switch name {
		case "origin":
			dst = &x.Origin
		case "destination":
			dst = &x.Destination
		case "key":
			dst = (*string)(&x.Key)
		case "sig":
			dst = &x.Sig
		default:
			continue
		}
		if seen[name] {
			return XMatrix{}, fmt.Errorf("X-Matrix: %s given twice", name)
		}
		seen[name] = true
		*dst = value
	}
	switch {
	case x.Origin == "":
		return XMatrix{}, errors.New("X-Matrix: no origin")
	case x.Key == "":
		return XMatrix{}, errors.New("X-Matrix: no key")
	case x.Sig == "":
		return XMatrix{}, errors.New("X-Matrix: no sig")
	}
	if _, _, _, err := splitServerName(x.Origin); err != nil {
		return XMatrix{}, fmt.Errorf("X-Matrix: origin: %w", err)
	}
	if x.Destination != "" {
		if _, _, _, err := splitServerName(x.Destination); err != nil {
			return XMatrix{}, fmt.Errorf("X-Matrix: destination: %w", err)
		}
	}
	return x, nil
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// clip returns s cut to at most n runes, with an ellipsis if cut.
func clip(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i] + "…"
		}
		n--
	}
	return s
}

// requestJSON returns the canonical JSON object a request's signature
// covers: {method, uri, origin, destination, content?}, where content is
// the body if it is not empty. Its members are written in canonical order;
// the body is canonicalised in the legacy mode (room versions 1–5), so
// that transactions carrying old rooms' PDUs with non-integer numbers are
// signed as Synapse encodes them. It returns a *cjson.SyntaxError if the
// body is not JSON.
func requestJSON(method, uri, origin, destination string, body []byte) ([]byte, error) {
	out := make([]byte, 0, len(body)+len(uri)+len(origin)+len(destination)+96)
	out = append(out, '{')
	if len(bytes.TrimSpace(body)) > 0 {
		out = append(out, `"content":`...)
		var err error
		if out, err = cjson.Append(out, body, cjson.Legacy); err != nil {
			return nil, err
		}
		out = append(out, ',')
	}
	out = append(out, `"destination":`...)
	out = cjson.AppendString(out, destination)
	out = append(out, `,"method":`...)
	out = cjson.AppendString(out, method)
	out = append(out, `,"origin":`...)
	out = cjson.AppendString(out, origin)
	out = append(out, `,"uri":`...)
	out = cjson.AppendString(out, uri)
	return append(out, '}'), nil
}

// SignRequest signs r as origin for destination with key and sets its
// Authorization header (server-server API, "Request Authentication"). body
// is r's body (nil or empty for none); the signed URI is
// r.URL.RequestURI(), which is what the HTTP client sends.
func SignRequest(r *http.Request, body []byte, origin, destination string, key *keys.SigningKey) error {
	msg, err := requestJSON(r.Method, r.URL.RequestURI(), origin, destination, body)
	if err != nil {
		return fmt.Errorf("sign request: body: %w", err)
	}
	x := XMatrix{Origin: origin, Destination: destination, Key: key.KeyID(), Sig: encodeSig(key.Sign(msg))}
	r.Header.Set("Authorization", x.String())
	return nil
}

// VerifyRequest checks the X-Matrix authorization of an inbound request
// and returns the origin server's name. body is the request body as read
// (nil for none); ourName is this server's name; key returns the origin's
// public key with the given ID, valid now (keys.Cache.RequestKey fits).
//
// The signed URI is the request target as received (r.RequestURI), or
// r.URL.RequestURI() for a request made in process. The first X-Matrix
// Authorization header is used.
//
// Errors: a 401 M_UNAUTHORIZED *mxerr.Error when the header is missing or
// malformed, names another destination, or its signature does not verify
// or its key cannot be had; M_NOT_JSON for a body that is not JSON; the
// context's error, wrapped, when ctx ends.
func VerifyRequest(ctx context.Context, r *http.Request, body []byte, ourName string, key func(ctx context.Context, server string, keyID id.KeyID) (ed25519.PublicKey, error)) (origin string, err error) {
	var header string
	for _, v := range r.Header.Values("Authorization") {
		if scheme, _, _ := strings.Cut(v, " "); strings.EqualFold(scheme, "X-Matrix") {
			header = v
			break
		}
	}
	if header == "" {
		return "", mxerr.Unauthorized("missing X-Matrix Authorization header")
	}
	x, err := ParseXMatrix(header)
	if err != nil {
		return "", mxerr.Unauthorized("%v", err)
	}
	// "If this property is included, but the value does not match the
	// receiving server's name, the receiving server must deny the request
	// with an HTTP status code 401 Unauthorized."
	if x.Destination != "" && x.Destination != ourName {
		return "", mxerr.Unauthorized("request is for %s, not this server", x.Destination)
	}
	if !strings.HasPrefix(string(x.Key), keys.Algorithm+":") {
		return "", mxerr.Unauthorized("unsupported key algorithm in %q", x.Key)
	}
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		uri = r.URL.RequestURI()
	}
	// Older servers sign the destination though they do not send it: the
	// JSON always names this server.
	msg, err := requestJSON(r.Method, uri, x.Origin, ourName, body)
	if err != nil {
		return "", mxerr.NotJSON("request body is not valid JSON")
	}
	pub, err := key(ctx, x.Origin, x.Key)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("key %s of %s: %w", x.Key, x.Origin, ctx.Err())
		}
		return "", mxerr.Unauthorized("cannot get key %s of %s to check the request's signature", x.Key, x.Origin)
	}
	if err := keys.VerifySignature(msg, x.Sig, pub); err != nil {
		return "", mxerr.Unauthorized("signature by %s with %s does not verify", x.Origin, x.Key)
	}
	return x.Origin, nil
}

func encodeSig(sig []byte) string {
	return base64.RawStdEncoding.EncodeToString(sig)
}
