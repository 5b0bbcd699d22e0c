// Package api holds the HTTP code shared by every API: handlers that return
// an error, the JSON codec, the one error writer, and the middleware
// (CORS, access log, metrics, rate limits, body limits, panics).
//
// Imported by internal/api/client, internal/api/federation and internal/server.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"polder.dev/polder/internal/mxerr"
)

// Handler serves a request and returns an error instead of writing one.
// An *mxerr.Error in the chain is written as the Matrix error it is;
// anything else becomes a 500 M_UNKNOWN and one log line.
type Handler func(w http.ResponseWriter, r *http.Request) error

// Errors turns Handlers into http.Handlers. It owns the logger that
// unexpected errors are logged to.
type Errors struct{ Log *slog.Logger }

// H adapts h.
func (e Errors) H(h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			e.Write(w, r, err)
		}
	})
}

// Write writes err as a Matrix error response.
func (e Errors) Write(w http.ResponseWriter, r *http.Request, err error) {
	if mx, ok := mxerr.As(err); ok {
		WriteError(w, mx)
		return
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		WriteError(w, mxerr.TooLarge("request body is larger than %d bytes", tooBig.Limit))
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody is left to read a response.
		return
	}
	if e.Log != nil {
		e.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	WriteError(w, mxerr.Unknown("Internal server error"))
}

// WriteError writes a Matrix error.
func WriteError(w http.ResponseWriter, e *mxerr.Error) {
	body := make(map[string]any, 2+len(e.Fields))
	for k, v := range e.Fields {
		body[k] = v
	}
	if e.Code != "" { // a UIA 401 without a stage error has none
		body["errcode"] = e.Code
		body["error"] = e.Msg
	}
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	WriteJSON(w, e.HTTPStatus(), body)
}

// WriteJSON writes v as a JSON response with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(data)
	return err
}

// OK writes v with status 200.
func OK(w http.ResponseWriter, v any) error { return WriteJSON(w, http.StatusOK, v) }

// DecodeJSON reads the request body, a JSON object, into v. Errors are
// M_NOT_JSON for a body that is not JSON and M_BAD_JSON for JSON of the
// wrong shape (spec: "Standard error response"). The Content-Type is not
// checked: browsers send JSON as text/plain to avoid a preflight.
func DecodeJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return mxerr.NotJSON("request body is empty; expected a JSON object")
	}
	return decode(data, v)
}

// DecodeOptionalJSON is DecodeJSON, but an empty body leaves v as it is.
func DecodeOptionalJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return decode(data, v)
}

func decode(data []byte, v any) error {
	if !json.Valid(data) {
		return mxerr.NotJSON("request body is not valid JSON")
	}
	if bytes.TrimLeft(data, " \t\r\n")[0] != '{' {
		return mxerr.BadJSON("request body must be a JSON object")
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return mxerr.BadJSON("field %q has the wrong type: want %s", te.Field, te.Type)
		}
		return mxerr.BadJSON("request body has the wrong shape: %v", err)
	}
	return nil
}
