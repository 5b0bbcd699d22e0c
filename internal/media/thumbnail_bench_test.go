package media_test

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"

	"polder.dev/polder/internal/media"
)

func benchImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 7), uint8(y * 3), uint8(x ^ y), 255})
		}
	}
	return img
}

// BenchmarkThumbnail: the time to make one thumbnail (decode, scale,
// encode) of a 12-megapixel camera JPEG, a 1920x1080 JPEG and a 1024x768
// PNG, in the two sizes clients ask for most.
func BenchmarkThumbnail(b *testing.B) {
	var big, hd, pngData bytes.Buffer
	jpeg.Encode(&big, benchImage(4000, 3000), &jpeg.Options{Quality: 85})
	jpeg.Encode(&hd, benchImage(1920, 1080), &jpeg.Options{Quality: 85})
	png.Encode(&pngData, benchImage(1024, 768))
	for _, src := range []struct {
		name string
		data []byte
	}{{"jpeg-4000x3000", big.Bytes()}, {"jpeg-1920x1080", hd.Bytes()}, {"png-1024x768", pngData.Bytes()}} {
		for _, size := range []media.ThumbSize{{Width: 96, Height: 96, Method: "crop"}, {Width: 800, Height: 600, Method: "scale"}} {
			b.Run(src.name+"/"+size.Method+"-"+itoa(size.Width), func(b *testing.B) {
				b.SetBytes(int64(len(src.data)))
				for b.Loop() {
					if _, _, err := media.Generate(bytes.NewReader(src.data), size, false); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func itoa(n int) string {
	s := ""
	for n > 0 {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return s
}
