// Package mxerr owns Matrix errors: the errcode/error pair that clients see
// (spec: client-server API, "Standard error response") and the HTTP status of
// each errcode. Return an *Error only when the client must see that errcode;
// wrap everything else with context and let the API edge turn it into a 500.
//
// std only; imported by everything above it.
package mxerr

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is a Matrix error: it is written to the client as
// {"errcode": Code, "error": Msg, ...Fields}.
type Error struct {
	Code   string
	Msg    string
	Status int            // 0 means the errcode's default status.
	Fields map[string]any // extra top-level fields (retry_after_ms, soft_logout, ...).
	Header http.Header    // extra response headers (Retry-After).
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// HTTPStatus is the status the response carries.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := statuses[e.Code]; ok {
		return s
	}
	return http.StatusBadRequest
}

// WithStatus returns a copy of e with another HTTP status.
func (e *Error) WithStatus(status int) *Error {
	c := *e
	c.Status = status
	return &c
}

// With returns a copy of e with an extra top-level field.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Fields = make(map[string]any, len(e.Fields)+1)
	for k, v := range e.Fields {
		c.Fields[k] = v
	}
	c.Fields[key] = value
	return &c
}

// As finds the *Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// statuses maps each errcode to its default HTTP status (spec: client-server
// API, "Common error codes" and the per-endpoint response tables).
var statuses = map[string]int{
	"M_FORBIDDEN":                       http.StatusForbidden,
	"M_UNKNOWN_TOKEN":                   http.StatusUnauthorized,
	"M_MISSING_TOKEN":                   http.StatusUnauthorized,
	"M_USER_LOCKED":                     http.StatusUnauthorized,
	"M_USER_SUSPENDED":                  http.StatusForbidden,
	"M_BAD_JSON":                        http.StatusBadRequest,
	"M_NOT_JSON":                        http.StatusBadRequest,
	"M_NOT_FOUND":                       http.StatusNotFound,
	"M_LIMIT_EXCEEDED":                  http.StatusTooManyRequests,
	"M_UNRECOGNIZED":                    http.StatusNotFound,
	"M_UNKNOWN":                         http.StatusInternalServerError,
	"M_UNAUTHORIZED":                    http.StatusUnauthorized,
	"M_USER_DEACTIVATED":                http.StatusForbidden,
	"M_USER_IN_USE":                     http.StatusBadRequest,
	"M_INVALID_USERNAME":                http.StatusBadRequest,
	"M_ROOM_IN_USE":                     http.StatusBadRequest,
	"M_INVALID_ROOM_STATE":              http.StatusBadRequest,
	"M_THREEPID_IN_USE":                 http.StatusBadRequest,
	"M_THREEPID_NOT_FOUND":              http.StatusBadRequest,
	"M_THREEPID_AUTH_FAILED":            http.StatusBadRequest,
	"M_THREEPID_DENIED":                 http.StatusBadRequest,
	"M_SERVER_NOT_TRUSTED":              http.StatusBadRequest,
	"M_UNSUPPORTED_ROOM_VERSION":        http.StatusBadRequest,
	"M_INCOMPATIBLE_ROOM_VERSION":       http.StatusBadRequest,
	"M_BAD_STATE":                       http.StatusBadRequest,
	"M_BAD_ALIAS":                       http.StatusBadRequest,
	"M_GUEST_ACCESS_FORBIDDEN":          http.StatusForbidden,
	"M_CAPTCHA_NEEDED":                  http.StatusBadRequest,
	"M_CAPTCHA_INVALID":                 http.StatusBadRequest,
	"M_MISSING_PARAM":                   http.StatusBadRequest,
	"M_INVALID_PARAM":                   http.StatusBadRequest,
	"M_TOO_LARGE":                       http.StatusRequestEntityTooLarge,
	"M_EXCLUSIVE":                       http.StatusBadRequest,
	"M_RESOURCE_LIMIT_EXCEEDED":         http.StatusForbidden,
	"M_CANNOT_LEAVE_SERVER_NOTICE_ROOM": http.StatusForbidden,
	"M_WEAK_PASSWORD":                   http.StatusBadRequest,
	"M_UNABLE_TO_AUTHORISE_JOIN":        http.StatusBadRequest,
	"M_UNABLE_TO_GRANT_JOIN":            http.StatusBadRequest,
	"M_THREEPID_MEDIUM_NOT_SUPPORTED":   http.StatusBadRequest,
	"M_APPSERVICE_LOGIN_UNSUPPORTED":    http.StatusBadRequest,
}

func newErr(code, format string, args []any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Msg: msg}
}

// Constructors for the errcodes handlers return. Each takes a printf format.
// New is an error with any errcode of the table.
func New(code, format string, a ...any) *Error { return newErr(code, format, a) }

func Forbidden(format string, a ...any) *Error    { return newErr("M_FORBIDDEN", format, a) }
func NotFound(format string, a ...any) *Error     { return newErr("M_NOT_FOUND", format, a) }
func BadJSON(format string, a ...any) *Error      { return newErr("M_BAD_JSON", format, a) }
func NotJSON(format string, a ...any) *Error      { return newErr("M_NOT_JSON", format, a) }
func MissingParam(format string, a ...any) *Error { return newErr("M_MISSING_PARAM", format, a) }
func InvalidParam(format string, a ...any) *Error { return newErr("M_INVALID_PARAM", format, a) }
func Unrecognized(format string, a ...any) *Error { return newErr("M_UNRECOGNIZED", format, a) }
func MissingToken(format string, a ...any) *Error { return newErr("M_MISSING_TOKEN", format, a) }
func UserInUse(format string, a ...any) *Error    { return newErr("M_USER_IN_USE", format, a) }
func InvalidUsername(format string, a ...any) *Error {
	return newErr("M_INVALID_USERNAME", format, a)
}
func UserDeactivated(format string, a ...any) *Error {
	return newErr("M_USER_DEACTIVATED", format, a)
}
func Unauthorized(format string, a ...any) *Error { return newErr("M_UNAUTHORIZED", format, a) }
func TooLarge(format string, a ...any) *Error     { return newErr("M_TOO_LARGE", format, a) }
func WeakPassword(format string, a ...any) *Error { return newErr("M_WEAK_PASSWORD", format, a) }
func Unknown(format string, a ...any) *Error      { return newErr("M_UNKNOWN", format, a) }
func GuestAccessForbidden(format string, a ...any) *Error {
	return newErr("M_GUEST_ACCESS_FORBIDDEN", format, a)
}

// UnknownToken is M_UNKNOWN_TOKEN; soft marks a soft logout (spec:
// "Soft logout"), e.g. for an expired access token that a refresh token can renew.
func UnknownToken(soft bool, format string, a ...any) *Error {
	e := newErr("M_UNKNOWN_TOKEN", format, a)
	if soft {
		e.Fields = map[string]any{"soft_logout": true}
	}
	return e
}

// LimitExceeded is M_LIMIT_EXCEEDED with retry_after_ms and a Retry-After header.
func LimitExceeded(retry time.Duration) *Error {
	ms := retry.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	secs := (ms + 999) / 1000
	return &Error{
		Code:   "M_LIMIT_EXCEEDED",
		Msg:    "Too many requests",
		Fields: map[string]any{"retry_after_ms": ms},
		Header: http.Header{"Retry-After": []string{fmt.Sprint(secs)}},
	}
}

// Room errcodes.
func RoomInUse(format string, a ...any) *Error { return newErr("M_ROOM_IN_USE", format, a) }
func InvalidRoomState(format string, a ...any) *Error {
	return newErr("M_INVALID_ROOM_STATE", format, a)
}
func UnsupportedRoomVersion(format string, a ...any) *Error {
	return newErr("M_UNSUPPORTED_ROOM_VERSION", format, a)
}
func BadState(format string, a ...any) *Error { return newErr("M_BAD_STATE", format, a) }
