// Package identity is a small client of the Identity Service API
// (/_matrix/identity/v2): the lookups, invitation storage and key validity
// checks that third-party invites need (client-server API, "Third-party
// invites"; identity service API, "Association lookup", "Invitation
// storage", "Key management"). It keeps no state.
//
// Identity servers are named by clients (id_server: a hostname and
// optional port) and reached over HTTPS; key_validity_url comes from room
// state. Both are untrusted input: requests are bounded in time and size,
// redirects are not followed.
//
// Imported by internal/room.
package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"
)

// Config configures a Client.
type Config struct {
	// HTTP makes the requests. nil: a client with a 30 s timeout that trusts
	// the system's CAs and RootCAs, and follows no redirects.
	HTTP *http.Client
	// RootCAs, if not nil, replaces the system's CAs for the default client
	// (the server passes the CAs outbound federation trusts).
	RootCAs *x509.CertPool
	// Scheme of the identity server URLs; "https" if empty. Tests may use
	// "http".
	Scheme string
}

// Client talks to identity servers. The zero value is not usable; use New.
type Client struct {
	http   *http.Client
	scheme string
}

// New returns a Client.
func New(cfg Config) *Client {
	c := &Client{http: cfg.HTTP, scheme: cfg.Scheme}
	if c.scheme == "" {
		c.scheme = "https"
	}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.RootCAs != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		}
		c.http = &http.Client{
			Transport:     tr,
			Timeout:       30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c
}

// maxBody bounds an identity server's answer.
const maxBody = 1 << 20

// Error is a non-2xx answer of an identity server.
type Error struct {
	Status  int
	ErrCode string // the Matrix errcode, if the body had one
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("identity server answered %d %s: %s", e.Status, e.ErrCode, e.Message)
}

// ErrNoMapping is returned by Lookup when the identity server knows no
// Matrix user ID for the address.
var ErrNoMapping = errors.New("no matrix user id for the address")

// ErrBadServer is returned for an id_server that is not a host name with
// an optional port.
var ErrBadServer = errors.New("invalid identity server name")

// base returns the identity API's URL on server.
func (c *Client) base(server string) (string, error) {
	if server == "" || strings.ContainsAny(server, "/?#@ \\") {
		return "", fmt.Errorf("%w: %q", ErrBadServer, server)
	}
	return c.scheme + "://" + server + "/_matrix/identity/v2", nil
}

// do sends a request and decodes a 2xx JSON answer into out. Other
// answers are *Error.
func (c *Client) do(ctx context.Context, method, u, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, req.URL.Redacted(), err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			ErrCode string `json:"errcode"`
			Error   string `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		return &Error{Status: resp.StatusCode, ErrCode: e.ErrCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, req.URL.Redacted(), err)
	}
	return nil
}

// HashDetails is the answer of GET /hash_details.
type HashDetails struct {
	LookupPepper string   `json:"lookup_pepper"`
	Algorithms   []string `json:"algorithms"`
}

// Lookup returns the Matrix user ID bound to medium/address on server
// (GET /hash_details, then POST /lookup with the sha256 algorithm, or
// "none" if that is all the server offers). It returns ErrNoMapping when
// there is none, *Error when the server refuses, ErrBadServer.
func (c *Client) Lookup(ctx context.Context, server, token, medium, address string) (id.UserID, error) {
	base, err := c.base(server)
	if err != nil {
		return "", err
	}
	var hd HashDetails
	if err := c.do(ctx, http.MethodGet, base+"/hash_details", token, nil, &hd); err != nil {
		return "", err
	}
	var algorithm, query string
	switch {
	case slices.Contains(hd.Algorithms, "sha256"):
		algorithm, query = "sha256", HashAddress(address, medium, hd.LookupPepper)
	case slices.Contains(hd.Algorithms, "none"):
		algorithm, query = "none", address+" "+medium
	default:
		return "", fmt.Errorf("identity server %s offers no lookup algorithm we know (%v)", server, hd.Algorithms)
	}
	var out struct {
		Mappings map[string]string `json:"mappings"`
	}
	req := map[string]any{"algorithm": algorithm, "pepper": hd.LookupPepper, "addresses": []string{query}}
	if err := c.do(ctx, http.MethodPost, base+"/lookup", token, req, &out); err != nil {
		return "", err
	}
	mxid, ok := out.Mappings[query]
	if !ok || mxid == "" {
		return "", ErrNoMapping
	}
	return id.UserID(mxid), nil
}

// HashAddress is the sha256 lookup form of an address (identity service
// API, "sha256"): URL-safe unpadded base64 of SHA-256("<address> <medium>
// <pepper>").
func HashAddress(address, medium, pepper string) string {
	sum := sha256.Sum256([]byte(address + " " + medium + " " + pepper))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// StoreInviteRequest is the body of POST /store-invite. Optional fields are
// left out when empty.
type StoreInviteRequest struct {
	Medium            string    `json:"medium"`
	Address           string    `json:"address"`
	RoomID            id.RoomID `json:"room_id"`
	Sender            id.UserID `json:"sender"`
	RoomAlias         string    `json:"room_alias,omitempty"`
	RoomAvatarURL     string    `json:"room_avatar_url,omitempty"`
	RoomJoinRules     string    `json:"room_join_rules,omitempty"`
	RoomName          string    `json:"room_name,omitempty"`
	RoomType          string    `json:"room_type,omitempty"`
	SenderDisplayName string    `json:"sender_display_name,omitempty"`
	SenderAvatarURL   string    `json:"sender_avatar_url,omitempty"`
}

// PublicKey is a key of a stored invite.
type PublicKey struct {
	PublicKey      string `json:"public_key"`
	KeyValidityURL string `json:"key_validity_url,omitempty"`
}

// StoredInvite is the answer of POST /store-invite.
type StoredInvite struct {
	Token       string      `json:"token"`
	PublicKeys  []PublicKey `json:"public_keys"`
	DisplayName string      `json:"display_name"`
}

// StoreInvite asks server to store an invite for an address that has no
// binding yet (POST /store-invite). It returns *Error when the server
// refuses (M_THREEPID_IN_USE if the address got bound meanwhile),
// ErrBadServer, or an error for an answer without token or keys.
func (c *Client) StoreInvite(ctx context.Context, server, token string, req StoreInviteRequest) (*StoredInvite, error) {
	base, err := c.base(server)
	if err != nil {
		return nil, err
	}
	var out StoredInvite
	if err := c.do(ctx, http.MethodPost, base+"/store-invite", token, req, &out); err != nil {
		return nil, err
	}
	if !validToken(out.Token) || len(out.PublicKeys) == 0 || out.PublicKeys[0].PublicKey == "" {
		return nil, fmt.Errorf("identity server %s answered store-invite without a valid token or key", server)
	}
	return &out, nil
}

// validToken checks the token grammar of store-invite: 1 to 255 of
// [0-9a-zA-Z.=_-].
func validToken(t string) bool {
	if t == "" || len(t) > 255 {
		return false
	}
	for _, r := range t {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune(".=_-", r)) {
			return false
		}
	}
	return true
}

// KeyValid asks a key_validity_url whether publicKey is still valid
// (identity service API, "Key management": GET with the public_key query
// parameter, answer {"valid": bool}). Only http and https URLs are
// fetched.
func (c *Client) KeyValid(ctx context.Context, validityURL, publicKey string) (bool, error) {
	u, err := url.Parse(validityURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return false, fmt.Errorf("invalid key_validity_url %q", validityURL)
	}
	q := u.Query()
	q.Set("public_key", publicKey)
	u.RawQuery = q.Encode()
	var out struct {
		Valid bool `json:"valid"`
	}
	if err := c.do(ctx, http.MethodGet, u.String(), "", nil, &out); err != nil {
		return false, err
	}
	return out.Valid, nil
}
