package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"runtime"
	"strconv"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers WebP decoding

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// Thumbnails (client-server API, "Thumbnails"). A request is answered with
// the smallest of the sizes the spec recommends that is at least as large
// as asked (preferring the method asked for), made once and kept:
//
//	32x32 crop, 96x96 crop, 320x240 scale, 640x480 scale, 800x600 scale
//
// Images are never upscaled. JPEG sources give JPEG thumbnails, others
// PNG; with animated=true an animated GIF gives an animated GIF. Images of
// more than MaxPixels pixels (or animations of more than MaxAnimPixels
// over all frames) are not decoded: a small file can declare a huge image.

// ThumbSize is a thumbnail size and method.
type ThumbSize struct {
	Width, Height int
	Method        string // crop or scale
}

// ThumbSizes are the sizes thumbnails are made in.
var ThumbSizes = []ThumbSize{{32, 32, "crop"}, {96, 96, "crop"}, {320, 240, "scale"}, {640, 480, "scale"}, {800, 600, "scale"}}

const (
	// MaxPixels bounds the pixels of an image to thumbnail.
	MaxPixels = 40_000_000
	// MaxAnimPixels bounds the pixels of all frames of an animation.
	MaxAnimPixels = 100_000_000
)

func thumbConcurrency() int { return max(1, runtime.GOMAXPROCS(0)) }

// pickSize chooses the stored size for a request of w×h by method.
func pickSize(w, h int, method string) ThumbSize {
	var best, other *ThumbSize
	for i := range ThumbSizes {
		t := &ThumbSizes[i]
		if t.Width < w || t.Height < h {
			continue
		}
		if t.Method == method && best == nil {
			best = t
		}
		if other == nil {
			other = t
		}
	}
	if best != nil {
		return *best
	}
	if other != nil {
		return *other
	}
	return ThumbSizes[len(ThumbSizes)-1]
}

// thumbnailable reports whether content of this type can be thumbnailed.
func thumbnailable(contentType string) bool {
	switch baseType(contentType) {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
		return true
	}
	return false
}

// Thumbnail returns a thumbnail of mxc://serverName/mediaID for a request
// of w×h by method, opened for reading. Errors are Open's, and 400
// M_INVALID_PARAM for bad sizes, 404 M_NOT_FOUND when the media is not an
// image that can be thumbnailed, 413 M_TOO_LARGE for images too large to
// decode.
func (s *Service) Thumbnail(ctx context.Context, serverName, mediaID string, w, h int, method string, animated bool, o OpenOptions) (*Content, error) {
	if w <= 0 || h <= 0 {
		return nil, mxerr.InvalidParam("width and height must be positive integers")
	}
	if method == "" {
		method = "scale"
	}
	if method != "crop" && method != "scale" {
		return nil, mxerr.InvalidParam("method must be crop or scale")
	}
	m, err := s.lookup(ctx, serverName, mediaID, o)
	if err != nil {
		return nil, err
	}
	if !thumbnailable(m.ContentType) {
		return nil, mxerr.NotFound("No thumbnail can be made of media of type %s", m.ContentType)
	}
	size := pickSize(w, h, method)
	key := store.MediaThumbnail{ServerName: serverName, MediaID: mediaID, Width: size.Width, Height: size.Height,
		Method: size.Method, Animated: animated && baseType(m.ContentType) == "image/gif"}
	t, err := s.db.MediaThumbnail(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		flightKey := fmt.Sprintf("%s/%s/%d/%d/%s/%t", serverName, mediaID, key.Width, key.Height, key.Method, key.Animated)
		ch := s.thumbFlight.DoChan(flightKey, func() (any, error) {
			return s.makeThumbnail(context.WithoutCancel(ctx), m, key)
		})
		select {
		case r := <-ch:
			if r.Err != nil {
				return nil, r.Err
			}
			t = r.Val.(store.MediaThumbnail)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	} else if err != nil {
		return nil, err
	}
	f, err := s.blobs.open(t.SHA256)
	if err != nil {
		return nil, err
	}
	s.metrics.downloads.Inc()
	return &Content{Media: store.Media{ServerName: serverName, MediaID: mediaID, SHA256: t.SHA256, Size: t.Size,
		ContentType: t.ContentType, UploadName: "thumbnail", CreatedTS: m.CreatedTS}, File: f}, nil
}

func (s *Service) makeThumbnail(ctx context.Context, m store.Media, key store.MediaThumbnail) (store.MediaThumbnail, error) {
	if t, err := s.db.MediaThumbnail(ctx, key); err == nil {
		return t, nil
	}
	f, err := s.blobs.open(m.SHA256)
	if err != nil {
		return key, err
	}
	defer f.Close()
	select {
	case s.cpuSem <- struct{}{}:
	case <-ctx.Done():
		return key, ctx.Err()
	}
	data, ctype, err := Generate(f, ThumbSize{key.Width, key.Height, key.Method}, key.Animated)
	<-s.cpuSem
	if err != nil {
		return key, err
	}
	s.blobMu.RLock()
	defer s.blobMu.RUnlock()
	sha, err := s.blobs.put(data)
	if err != nil {
		return key, err
	}
	key.SHA256, key.Size, key.ContentType = sha, int64(len(data)), ctype
	if err := s.db.PutMediaThumbnail(ctx, key); err != nil {
		return key, err
	}
	s.metrics.thumbnails.Inc()
	return key, nil
}

// Generate makes a thumbnail of the image in r in size and returns it
// with its content type. animated keeps an animated GIF animated. Errors:
// 404 M_NOT_FOUND for content that is not a supported image, 413
// M_TOO_LARGE for images over MaxPixels.
func Generate(r io.ReadSeeker, size ThumbSize, animated bool) ([]byte, string, error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return nil, "", mxerr.NotFound("No thumbnail can be made of this media: %v", err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, "", mxerr.TooLarge("The image is too large to thumbnail (%dx%d)", cfg.Width, cfg.Height)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, "", err
	}
	if animated && format == "gif" {
		return animatedGIF(r, size)
	}
	src, _, err := image.Decode(r)
	if err != nil {
		return nil, "", mxerr.NotFound("No thumbnail can be made of this media: %v", err)
	}
	dst := resize(src, size)
	var buf bytes.Buffer
	if format == "jpeg" {
		err = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 80})
		return buf.Bytes(), "image/jpeg", err
	}
	err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, dst)
	return buf.Bytes(), "image/png", err
}

// geometry returns the size to scale src to and the part of the scaled
// image to keep, for size.
func geometry(sw, sh int, size ThumbSize) (scaled image.Point, crop image.Rectangle) {
	if size.Method == "crop" {
		// Scale to cover the box, then cut the middle; never upscale.
		f := max(float64(size.Width)/float64(sw), float64(size.Height)/float64(sh))
		f = min(f, 1)
		w, h := max(1, int(float64(sw)*f+0.5)), max(1, int(float64(sh)*f+0.5))
		cw, ch := min(w, size.Width), min(h, size.Height)
		x, y := (w-cw)/2, (h-ch)/2
		return image.Pt(w, h), image.Rect(x, y, x+cw, y+ch)
	}
	f := min(float64(size.Width)/float64(sw), float64(size.Height)/float64(sh), 1)
	w, h := max(1, int(float64(sw)*f+0.5)), max(1, int(float64(sh)*f+0.5))
	return image.Pt(w, h), image.Rect(0, 0, w, h)
}

// resize scales (and crops) src in one pass: the crop rectangle is mapped
// back onto the source.
func resize(src image.Image, size ThumbSize) *image.RGBA {
	b := src.Bounds()
	scaled, crop := geometry(b.Dx(), b.Dy(), size)
	fx, fy := float64(b.Dx())/float64(scaled.X), float64(b.Dy())/float64(scaled.Y)
	sr := image.Rect(b.Min.X+int(float64(crop.Min.X)*fx), b.Min.Y+int(float64(crop.Min.Y)*fy),
		b.Min.X+int(float64(crop.Max.X)*fx+0.5), b.Min.Y+int(float64(crop.Max.Y)*fy+0.5)).Intersect(b)
	dst := image.NewRGBA(image.Rect(0, 0, crop.Dx(), crop.Dy()))
	interp := draw.Interpolator(draw.CatmullRom)
	if sr.Dx() > 2*dst.Bounds().Dx() {
		// Sources over twice as large: bilinear is close enough and several
		// times faster.
		interp = draw.ApproxBiLinear
	}
	interp.Scale(dst, dst.Bounds(), src, sr, draw.Src, nil)
	return dst
}

// animatedGIF thumbnails every frame of a GIF: each frame is drawn over
// the previous ones as its disposal says, and the composed frame scaled.
func animatedGIF(r io.Reader, size ThumbSize) ([]byte, string, error) {
	g, err := gif.DecodeAll(r)
	if err != nil {
		return nil, "", mxerr.NotFound("No thumbnail can be made of this media: %v", err)
	}
	w, h := g.Config.Width, g.Config.Height
	if int64(w)*int64(h)*int64(len(g.Image)) > MaxAnimPixels {
		return nil, "", mxerr.TooLarge("The animation is too large to thumbnail")
	}
	canvas := image.NewRGBA(image.Rect(0, 0, w, h))
	out := &gif.GIF{Delay: g.Delay, LoopCount: g.LoopCount}
	var prev *image.RGBA
	for i, frame := range g.Image {
		disposal := byte(0)
		if i < len(g.Disposal) {
			disposal = g.Disposal[i]
		}
		if disposal == gif.DisposalPrevious {
			prev = image.NewRGBA(canvas.Bounds())
			draw.Draw(prev, prev.Bounds(), canvas, image.Point{}, draw.Src)
		}
		draw.Draw(canvas, frame.Bounds(), frame, frame.Bounds().Min, draw.Over)
		small := resize(canvas, size)
		pal := append(color.Palette{}, frame.Palette...)
		if len(pal) == 0 {
			pal = color.Palette{color.Black, color.White}
		}
		pm := image.NewPaletted(small.Bounds(), pal)
		draw.Draw(pm, pm.Bounds(), small, image.Point{}, draw.Src)
		out.Image = append(out.Image, pm)
		out.Disposal = append(out.Disposal, gif.DisposalNone)
		switch disposal {
		case gif.DisposalBackground:
			draw.Draw(canvas, frame.Bounds(), image.Transparent, image.Point{}, draw.Src)
		case gif.DisposalPrevious:
			canvas = prev
		}
	}
	if len(out.Delay) > len(out.Image) {
		out.Delay = out.Delay[:len(out.Image)]
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, out); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "image/gif", nil
}

// ParseSize reads a thumbnail dimension of a query.
func ParseSize(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > 10000 {
		return 0, mxerr.InvalidParam("width and height must be positive integers")
	}
	return n, nil
}
