package store_test

import (
	"context"
	"errors"
	"testing"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestOpenIDTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for _, lp := range []string{"alice", "bob"} {
			if err := db.CreateAccount(ctx, store.Account{Localpart: lp}, ""); err != nil {
				t.Fatalf("CreateAccount(%s): %v", lp, err)
			}
		}
		for _, c := range []struct {
			hash, localpart string
			expires         int64
		}{
			{"a1", "alice", 100},
			{"a2", "alice", 200},
			{"b1", "bob", 300},
		} {
			if err := db.CreateOpenIDToken(ctx, []byte(c.hash), c.localpart, c.expires); err != nil {
				t.Fatalf("CreateOpenIDToken(%s): %v", c.hash, err)
			}
		}
		if err := db.CreateOpenIDToken(ctx, []byte("x"), "nobody", 100); err == nil {
			t.Errorf("CreateOpenIDToken(unknown account): got nil, want an error")
		}

		check := func(hash string, want store.OpenIDToken) {
			t.Helper()
			got, err := db.OpenIDToken(ctx, []byte(hash))
			if err != nil || got != want {
				t.Errorf("OpenIDToken(%s) = %+v, %v; want %+v", hash, got, err, want)
			}
		}
		check("a1", store.OpenIDToken{Localpart: "alice", ExpiresTS: 100})
		check("b1", store.OpenIDToken{Localpart: "bob", ExpiresTS: 300})
		if _, err := db.OpenIDToken(ctx, []byte("zz")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("OpenIDToken(unknown): got %v, want ErrNotFound", err)
		}

		if err := db.Deactivate(ctx, "bob"); err != nil {
			t.Fatalf("Deactivate(bob): %v", err)
		}
		check("b1", store.OpenIDToken{Localpart: "bob", ExpiresTS: 300, Deactivated: true})

		for _, c := range []struct {
			name   string
			before int64
			want   int64
			gone   []string
			kept   []string
		}{
			{"none expired", 99, 0, nil, []string{"a1", "a2", "b1"}},
			{"at its expiry", 100, 1, []string{"a1"}, []string{"a2", "b1"}},
			{"all", 1000, 2, []string{"a1", "a2", "b1"}, nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				n, err := db.ExpireOpenIDTokens(ctx, c.before)
				if err != nil || n != c.want {
					t.Errorf("ExpireOpenIDTokens(%d) = %d, %v; want %d", c.before, n, err, c.want)
				}
				for _, h := range c.gone {
					if _, err := db.OpenIDToken(ctx, []byte(h)); !errors.Is(err, store.ErrNotFound) {
						t.Errorf("OpenIDToken(%s) after ExpireOpenIDTokens(%d): got %v, want ErrNotFound", h, c.before, err)
					}
				}
				for _, h := range c.kept {
					if _, err := db.OpenIDToken(ctx, []byte(h)); err != nil {
						t.Errorf("OpenIDToken(%s) after ExpireOpenIDTokens(%d): %v", h, c.before, err)
					}
				}
			})
		}
	})
}
