package media

import (
	"mime"
	"net/http"
)

// Headers for serving content (client-server API, "Content repository",
// security considerations and "Serving inline content").

// inlineTypes are the content types served inline; everything else is an
// attachment.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true, "application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true, "audio/wave": true,
	"audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// ContentSecurityPolicy is the policy media is served with: the spec's
// recommendation, plus media-src so that audio and video still play.
const ContentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; " +
	"style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// SetHeaders sets the headers content of contentType named fileName is
// served with: Content-Type, Content-Disposition (inline only for the
// spec's safe types), the content security policy and nosniff.
func SetHeaders(h http.Header, contentType, fileName string) {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	disp := "attachment"
	if inlineTypes[baseType(contentType)] {
		disp = "inline"
	}
	if fileName != "" {
		disp = mime.FormatMediaType(disp, map[string]string{"filename": fileName})
		if disp == "" { // a name FormatMediaType cannot encode
			disp = "attachment"
		}
	}
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", disp)
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("X-Content-Type-Options", "nosniff")
}
