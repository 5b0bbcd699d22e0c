package eventauth_test

import (
	"bytes"
	"encoding/json/jsontext"
	"encoding/json/v2"
	"math"
	"testing"
	"unicode/utf8"

	"polder.dev/polder/internal/eventauth"
)

func TestParseLevel(t *testing.T) {
	type want struct {
		level      int64
		ok         bool
		outOfRange bool
	}
	bad := want{}
	tests := []struct {
		raw               string
		v1to5, v6to9, v10 want
	}{
		{`50`, want{50, true, false}, want{50, true, false}, want{50, true, false}},
		{`-10`, want{-10, true, false}, want{-10, true, false}, want{-10, true, false}},
		{`-0`, want{0, true, false}, want{0, true, false}, want{0, true, false}},
		{`"50"`, want{50, true, false}, want{50, true, false}, bad},
		{`"  +007 "`, want{7, true, false}, want{7, true, false}, bad},
		{`"-0050"`, want{-50, true, false}, want{-50, true, false}, bad},
		{`"\u0035"`, want{5, true, false}, want{5, true, false}, bad},
		{`"\t5\n"`, want{5, true, false}, want{5, true, false}, bad},
		{`""`, bad, bad, bad},
		{`" "`, bad, bad, bad},
		{`"+"`, bad, bad, bad},
		{`"+-5"`, bad, bad, bad},
		{`"5.0"`, bad, bad, bad},
		{`"1e2"`, bad, bad, bad},
		{`"0x10"`, bad, bad, bad},
		{`"1_000"`, bad, bad, bad},
		{`"٥"`, bad, bad, bad},
		{`50.7`, want{50, true, false}, bad, bad},
		{`-1.9`, want{-1, true, false}, bad, bad},
		{`5.114698E4`, want{51146, true, false}, bad, bad}, // the spec's example
		{`1e2`, want{100, true, false}, want{100, true, false}, want{100, true, false}},
		{`50.0`, want{50, true, false}, want{50, true, false}, want{50, true, false}},
		{`1e400`, want{0, false, true}, bad, bad},
		{`-1e400`, want{0, false, true}, bad, bad},
		{`9007199254740991`, want{9007199254740991, true, false}, want{9007199254740991, true, false}, want{9007199254740991, true, false}},
		{`9007199254740992`, want{9007199254740992, true, false}, bad, bad},
		{`9223372036854775808`, want{math.MaxInt64, true, false}, bad, bad},
		{`-9223372036854775809`, want{math.MinInt64, true, false}, bad, bad},
		{`1e300`, want{math.MaxInt64, true, false}, bad, bad},
		{`"99999999999999999999"`, want{math.MaxInt64, true, false}, want{math.MaxInt64, true, false}, bad},
		{`true`, bad, bad, bad},
		{`null`, bad, bad, bad},
		{`[1]`, bad, bad, bad},
		{`{}`, bad, bad, bad},
		{``, bad, bad, bad},
	}
	for _, tt := range tests {
		for _, c := range []struct {
			n    int
			want want
		}{{1, tt.v1to5}, {5, tt.v1to5}, {6, tt.v6to9}, {9, tt.v6to9}, {10, tt.v10}, {12, tt.v10}} {
			l, ok, oor := eventauth.ParseLevel(c.n, jsontext.Value(tt.raw))
			if got := (want{l, ok, oor}); !ok && !c.want.ok {
				if oor != c.want.outOfRange {
					t.Errorf("parseLevel(v%d, %s) outOfRange = %v, want %v", c.n, tt.raw, oor, c.want.outOfRange)
				}
			} else if got != c.want {
				t.Errorf("parseLevel(v%d, %s) = %+v, want %+v", c.n, tt.raw, got, c.want)
			}
		}
	}
}

// FuzzMember checks the allocation-free member lookup against
// encoding/json/v2 on valid JSON objects.
func FuzzMember(f *testing.F) {
	for _, s := range []struct{ obj, key string }{
		{`{"a":1,"b":"x"}`, "b"},
		{` { "a" : [1,{"b":"}"}] , "b" : {"c":"\""} } `, "b"},
		{`{"\u0061":1,"a":2}`, "a"},
		{`{"a\"b":true,"c":null}`, `a"b`},
		{`{}`, ""},
		{`{"@bob:b.example":"50","@bob:b.example":60}`, "@bob:b.example"},
	} {
		f.Add(s.obj, s.key)
	}
	f.Fuzz(func(t *testing.T, obj, key string) {
		opts := json.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
		// Event content is valid UTF-8 (event.Parse refuses anything
		// else); on invalid UTF-8 the reference decoder replaces bytes
		// with U+FFFD, so the answers are not comparable: only check that
		// Member survives it.
		if !jsontext.Value(obj).IsValid(opts) || !utf8.ValidString(obj) || !utf8.ValidString(key) {
			eventauth.Member([]byte(obj), key) // must not panic or hang
			return
		}
		var m map[string]jsontext.Value
		if err := json.Unmarshal([]byte(obj), &m, opts); err != nil {
			return // not an object
		}
		want, ok := m[key]
		got := eventauth.Member([]byte(obj), key)
		if !ok {
			if got != nil {
				t.Fatalf("member(%s, %q) = %s, want nil", obj, key, got)
			}
			return
		}
		if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
			t.Fatalf("member(%s, %q) = %s, want %s", obj, key, got, want)
		}
	})
}
