package media

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// blobs is the content on disk: one file per SHA-256 under
// dir/blobs/ab/cd/<hash>, so that the same bytes are stored once. New
// content is written to dir/tmp first, synced, and renamed into place: a
// crash leaves at worst a stray temporary file (removed at start), never
// a half-written blob.
type blobs struct{ dir string }

func newBlobs(dir string) (*blobs, error) {
	b := &blobs{dir: dir}
	for _, d := range []string{filepath.Join(dir, "blobs"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("media dir: %w", err)
		}
	}
	// Temporary files left by a crash belong to no one.
	if ents, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(dir, "tmp", e.Name()))
		}
	}
	return b, nil
}

func (b *blobs) path(sha string) string {
	return filepath.Join(b.dir, "blobs", sha[0:2], sha[2:4], sha)
}

// errTooBig is returned by stage when the content is larger than its limit.
var errTooBig = errors.New("content too large")

// staged is content written to a temporary file, not yet in place.
type staged struct {
	f    *os.File
	sha  string
	size int64
}

// stage copies r into a temporary file while hashing it. More than limit
// bytes is errTooBig.
func (b *blobs) stage(r io.Reader, limit int64) (*staged, error) {
	f, err := os.CreateTemp(filepath.Join(b.dir, "tmp"), "upload-*")
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, limit+1))
	st := &staged{f: f, size: n}
	if err == nil && n > limit {
		err = errTooBig
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		st.discard()
		return nil, err
	}
	st.sha = hex.EncodeToString(h.Sum(nil))
	return st, nil
}

// reader reads the staged content from its start.
func (st *staged) reader() (io.ReadSeeker, error) {
	if _, err := st.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return st.f, nil
}

func (st *staged) discard() {
	if st == nil || st.f == nil {
		return
	}
	st.f.Close()
	os.Remove(st.f.Name())
	st.f = nil
}

// commit moves staged content into place. Content already stored stays
// (it has the same bytes) and the temporary file goes.
func (b *blobs) commit(st *staged) error {
	defer st.discard()
	dst := b.path(st.sha)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("create blob dir: %w", err)
	}
	if err := os.Rename(st.f.Name(), dst); err != nil {
		return fmt.Errorf("move blob into place: %w", err)
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		d.Sync() // the rename survives a power loss
		d.Close()
	}
	return nil
}

// put stores data (a thumbnail) and returns its hash.
func (b *blobs) put(data []byte) (string, error) {
	h := sha256.Sum256(data)
	sha := hex.EncodeToString(h[:])
	if _, err := os.Stat(b.path(sha)); err == nil {
		return sha, nil
	}
	f, err := os.CreateTemp(filepath.Join(b.dir, "tmp"), "thumb-*")
	if err != nil {
		return "", err
	}
	st := &staged{f: f, sha: sha, size: int64(len(data))}
	if _, err := f.Write(data); err != nil {
		st.discard()
		return "", err
	}
	if err := f.Sync(); err != nil {
		st.discard()
		return "", err
	}
	return sha, b.commit(st)
}

func (b *blobs) open(sha string) (*os.File, error) { return os.Open(b.path(sha)) }

func (b *blobs) remove(shas []string) {
	for _, s := range shas {
		if len(s) >= 4 {
			os.Remove(b.path(s))
		}
	}
}

// count is the number of blobs on disk (tests).
func (b *blobs) count() int {
	n := 0
	filepath.WalkDir(filepath.Join(b.dir, "blobs"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}
