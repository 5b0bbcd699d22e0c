package store_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestServerKeys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		pub := func(b byte) ed25519.PublicKey { return bytes.Repeat([]byte{b}, ed25519.PublicKeySize) }
		ms := func(v int64) time.Time { return time.UnixMilli(v) }
		get := func(server string) []keys.RemoteKey {
			t.Helper()
			ks, err := db.ServerKeys(ctx, server)
			if err != nil {
				t.Fatalf("ServerKeys(%s): %v", server, err)
			}
			return ks
		}
		same := func(got, want []keys.RemoteKey) {
			t.Helper()
			if len(got) != len(want) {
				t.Fatalf("ServerKeys = %d keys %+v, want %d %+v", len(got), got, len(want), want)
			}
			for i := range got {
				g, w := got[i], want[i]
				if g.KeyID != w.KeyID || !bytes.Equal(g.Public, w.Public) || !g.ValidUntil.Equal(w.ValidUntil) ||
					g.Expired != w.Expired || !g.Fetched.Equal(w.Fetched) || !bytes.Equal(g.Response, w.Response) {
					t.Errorf("ServerKeys[%d] = %+v, want %+v", i, g, w)
				}
			}
		}

		if ks := get("remote.example"); len(ks) != 0 {
			t.Fatalf("ServerKeys of an unknown server = %+v, want none", ks)
		}
		first := []keys.RemoteKey{
			{KeyID: "ed25519:b", Public: pub(2), ValidUntil: ms(2000), Fetched: ms(1000), Response: []byte(`{"r":1}`)},
			{KeyID: "ed25519:a", Public: pub(1), ValidUntil: ms(500), Expired: true, Fetched: ms(1000), Response: []byte(`{"r":1}`)},
		}
		if err := db.PutServerKeys(ctx, "remote.example", first); err != nil {
			t.Fatalf("PutServerKeys: %v", err)
		}
		if err := db.PutServerKeys(ctx, "other.example", []keys.RemoteKey{{KeyID: "ed25519:b", Public: pub(9), ValidUntil: ms(1), Fetched: ms(1)}}); err != nil {
			t.Fatalf("PutServerKeys(other): %v", err)
		}
		same(get("remote.example"), []keys.RemoteKey{first[1], first[0]}) // in key ID order

		// A later fetch replaces the keys it holds and leaves the others.
		later := []keys.RemoteKey{
			{KeyID: "ed25519:b", Public: pub(2), ValidUntil: ms(3000), Expired: true, Fetched: ms(2500), Response: []byte(`{"r":2}`)},
			{KeyID: "ed25519:c", Public: pub(3), ValidUntil: ms(9000), Fetched: ms(2500), Response: []byte(`{"r":2}`)},
		}
		if err := db.PutServerKeys(ctx, "remote.example", later); err != nil {
			t.Fatalf("PutServerKeys(later): %v", err)
		}
		same(get("remote.example"), []keys.RemoteKey{first[1], later[0], later[1]})
		same(get("other.example"), []keys.RemoteKey{{KeyID: "ed25519:b", Public: pub(9), ValidUntil: ms(1), Fetched: ms(1)}})

		if err := db.PutServerKeys(ctx, "remote.example", nil); err != nil {
			t.Errorf("PutServerKeys(nil) = %v, want nil", err)
		}
	})
}
