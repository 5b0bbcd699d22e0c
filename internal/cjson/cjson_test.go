package cjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"polder.dev/polder/internal/cjson"
)

// TestSpecExamples runs the examples of the spec appendix "Canonical JSON"
// stored in testdata/spec.
func TestSpecExamples(t *testing.T) {
	ins, err := filepath.Glob("testdata/spec/*.in.json")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no spec vectors found: %v", err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			input := mustRead(t, in)
			want := mustRead(t, strings.TrimSuffix(in, ".in.json")+".out.json")
			got, err := cjson.Canonical(input)
			if err != nil {
				t.Fatalf("Canonical(%s) error: %v", input, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Canonical(%s)\n got %s\nwant %s", input, got, want)
			}
		})
	}
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"top-level string", `"hi"`, `"hi"`},
		{"top-level number", ` 42 `, `42`},
		{"top-level literals", `[true , false,null ]`, `[true,false,null]`},
		{"empty array and object", `[ [ ] , { } ]`, `[[],{}]`},
		{"nested sort", `{"b":{"d":1,"c":2},"a":[{"z":1,"y":2}]}`, `{"a":[{"y":2,"z":1}],"b":{"c":2,"d":1}}`},
		{"many keys reversed", `{"e":5,"d":4,"c":3,"b":2,"a":1}`, `{"a":1,"b":2,"c":3,"d":4,"e":5}`},
		{"prefix sorts first", `{"ab":1,"a":2}`, `{"a":2,"ab":1}`},
		{"code point not UTF-16 order", "{\"\uFFFF\":1,\"\U00010000\":2}", "{\"\uFFFF\":1,\"\U00010000\":2}"},
		{"code point order of astral keys", `{"\ud800\udc00":1,"\uffff":2}`, "{\"\uFFFF\":2,\"\U00010000\":1}"},
		{"escaped keys sort by value", `{"\\":5,"\"":4,"\n":3,"\r":2,"\u0000":1,"A":6}`, `{"\u0000":1,"\n":3,"\r":2,"\"":4,"A":6,"\\":5}`},
		{"short escapes kept", `"\b\t\n\f\r\"\\"`, `"\b\t\n\f\r\"\\"`},
		{"unicode escapes of short forms", `"\u0008\u0009\u000A\u000C\u000D\u0022\u005C"`, `"\b\t\n\f\r\"\\"`},
		{"other controls lower-case hex", `"\u0000\u000B\u001F\u001f\u000e"`, `"\u0000\u000b\u001f\u001f\u000e"`},
		{"solidus unescaped", `"\/a\/"`, `"/a/"`},
		{"DEL and separators unescaped", `"\u007f\u2028\u2029"`, "\"\x7f\u2028\u2029\""},
		{"html escapes undone", `"\u003c\u003e\u0026"`, `"<>&"`},
		{"surrogate pair", `"\uD83D\uDE00"`, "\"\U0001F600\""},
		{"raw utf8 kept", "\"caf\u00e9 \U0001F600\"", "\"caf\u00e9 \U0001F600\""},
		{"max int", `9007199254740991`, `9007199254740991`},
		{"min int", `-9007199254740991`, `-9007199254740991`},
		{"negative zero", `-0`, `0`},
		{"zero fraction", `1.0`, `1`},
		{"negative zero fraction", `-0.0`, `0`},
		{"exponent", `1e10`, `10000000000`},
		{"upper exponent with sign", `25E+2`, `2500`},
		{"fraction with exponent", `1.5e1`, `15`},
		{"negative exponent integral", `1500e-2`, `15`},
		{"zero with big exponent", `0e999999999999`, `0`},
		{"negative integral float", `-3.00`, `-3`},
		{"max int as exponent", `9.007199254740991e15`, `9007199254740991`},
		{"whitespace everywhere", " \t\r\n{ \"a\" : [ 1 , 2 ] } \n", `{"a":[1,2]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cjson.Canonical([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonical(%s) error: %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonical(%s) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestCanonicalErrors(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"empty", ``},
		{"only space", `  `},
		{"trailing data", `{} {}`},
		{"trailing comma object", `{"a":1,}`},
		{"trailing comma array", `[1,]`},
		{"missing colon", `{"a" 1}`},
		{"unquoted key", `{a:1}`},
		{"single quotes", `{'a':1}`},
		{"unterminated string", `"abc`},
		{"unterminated object", `{"a":1`},
		{"unterminated array", `[1`},
		{"bad literal", `tru`},
		{"NaN", `NaN`},
		{"Infinity", `Infinity`},
		{"leading plus", `+1`},
		{"leading zero", `01`},
		{"bare minus", `-`},
		{"dot without digits", `1.`},
		{"exponent without digits", `1e`},
		{"fraction", `1.5`},
		{"tiny", `1e-7`},
		{"too large", `9007199254740992`},
		{"too small", `-9007199254740992`},
		{"very long integer", `123456789012345678901234567890`},
		{"large exponent", `1e16`},
		{"huge exponent", `1e999999999999`},
		{"raw control character", "\"a\x01b\""},
		{"raw newline", "\"a\nb\""},
		{"invalid escape", `"\x41"`},
		{"short unicode escape", `"\u12"`},
		{"bad hex", `"\u12G4"`},
		{"lone high surrogate", `"\uD800"`},
		{"lone high surrogate then text", `"\uD800abcdef"`},
		{"high then non-low surrogate", `"\uD800\u0041"`},
		{"lone low surrogate", `"\uDC00"`},
		{"invalid utf8", "\"\xff\""},
		{"truncated utf8", "\"\xe6\x97\""},
		{"overlong utf8", "\"\xc0\xaf\""},
		{"utf8 surrogate", "\"\xed\xa0\x80\""},
		{"duplicate key adjacent", `{"a":1,"a":2}`},
		{"duplicate key unsorted", `{"b":1,"a":2,"b":3}`},
		{"duplicate key by escape", `{"a":1,"\u0061":2}`},
		{"too deep", strings.Repeat("[", cjson.MaxDepth+1) + strings.Repeat("]", cjson.MaxDepth+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cjson.Canonical([]byte(tt.in))
			if err == nil {
				t.Fatalf("Canonical(%q) = %s, want error", tt.in, got)
			}
			var se *cjson.SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("Canonical(%q) error %v is not a *SyntaxError", tt.in, err)
			}
		})
	}
}

func TestMaxDepthAccepted(t *testing.T) {
	in := strings.Repeat(`{"a":`, cjson.MaxDepth) + "1" + strings.Repeat("}", cjson.MaxDepth)
	got, err := cjson.Canonical([]byte(in))
	if err != nil {
		t.Fatalf("Canonical(depth %d) error: %v", cjson.MaxDepth, err)
	}
	if string(got) != in {
		t.Errorf("Canonical(depth %d) changed the input", cjson.MaxDepth)
	}
}

func TestCanonicalLegacy(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// Room versions 1–5: integers are kept as Python keeps them.
		{"big integer kept", `{"a":123456789012345678901234567890}`, `{"a":123456789012345678901234567890}`},
		{"negative big integer", `-9007199254740993`, `-9007199254740993`},
		{"negative zero integer", `-0`, `0`},
		// Floats are written as Python's repr writes them.
		{"fraction", `1.5`, `1.5`},
		{"integral float", `1.0`, `1.0`},
		{"exponent integral", `1e10`, `10000000000.0`},
		{"exponent 15", `1e15`, `1000000000000000.0`},
		{"exponent 16", `1e16`, `1e+16`},
		{"exponent 100", `1E100`, `1e+100`},
		{"small positional", `0.0001`, `0.0001`},
		{"small scientific", `0.00001`, `1e-05`},
		{"negative zero float", `-0.0`, `-0.0`},
		{"zero float", `0e5`, `0.0`},
		{"shortest round trip", `0.1000000000000000055511151231257827`, `0.1`},
		{"power levels example", `{"users":{"@bob:localhost":50.57}}`, `{"users":{"@bob:localhost":50.57}}`},
		{"upper E", `5.114698E4`, `51146.98`},
		{"underflow to zero", `1e-400`, `0.0`},
		{"sorted as strict", `{"b":1,"a":2.5}`, `{"a":2.5,"b":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cjson.CanonicalLegacy([]byte(tt.in))
			if err != nil {
				t.Fatalf("CanonicalLegacy(%s) error: %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("CanonicalLegacy(%s) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
	for _, in := range []string{`1e400`, `-1e309`, `{"a":1,"a":2}`, `1.`} {
		if got, err := cjson.CanonicalLegacy([]byte(in)); err == nil {
			t.Errorf("CanonicalLegacy(%s) = %s, want error", in, got)
		}
	}
}

func TestIntegersMode(t *testing.T) {
	for _, in := range []string{`1.0`, `1e10`, `-0.0`, `1.5`, `9007199254740992`, `{"a":[0E0]}`} {
		if got, err := cjson.Append(nil, []byte(in), cjson.Integers); err == nil {
			t.Errorf("Append(%s, Integers) = %s, want error", in, got)
		}
	}
	for in, want := range map[string]string{`-0`: `0`, `{"b":-1,"a":9007199254740991}`: `{"a":9007199254740991,"b":-1}`} {
		if got, err := cjson.Append(nil, []byte(in), cjson.Integers); err != nil || string(got) != want {
			t.Errorf("Append(%s, Integers) = %s, %v, want %s", in, got, err, want)
		}
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	dst := []byte("prefix:")
	got, err := cjson.Append(dst, []byte(`{"b":1,"a":2}`), cjson.Strict)
	if err != nil || string(got) != `prefix:{"a":2,"b":1}` {
		t.Errorf("Append(prefix) = %q, %v, want %q", got, err, `prefix:{"a":2,"b":1}`)
	}
	got, err = cjson.Append(dst, []byte(`{"b":1,`), cjson.Strict)
	if err == nil || string(got) != "prefix:" {
		t.Errorf("Append(prefix, invalid) = %q, %v, want %q and an error", got, err, "prefix:")
	}
}

func TestMarshal(t *testing.T) {
	type inner struct {
		Z string `json:"z"`
		A int    `json:"a"`
	}
	v := struct {
		Type    string         `json:"type"`
		Content map[string]any `json:"content"`
		Inner   inner          `json:"inner"`
		HTML    string         `json:"html"`
	}{
		Type:    "m.room.message",
		Content: map[string]any{"body": "hi", "n": 3},
		Inner:   inner{Z: "z", A: 1},
		HTML:    "<b>&</b>",
	}
	got, err := cjson.Marshal(v)
	want := `{"content":{"body":"hi","n":3},"html":"<b>&</b>","inner":{"a":1,"z":"z"},"type":"m.room.message"}`
	if err != nil || string(got) != want {
		t.Errorf("Marshal = %s, %v, want %s", got, err, want)
	}
	if got, err := cjson.Marshal(map[string]float64{"a": 1.5}); err == nil {
		t.Errorf("Marshal(1.5) = %s, want error", got)
	}
	if got, err := cjson.Marshal(math.MaxInt64); err == nil {
		t.Errorf("Marshal(MaxInt64) = %s, want error", got)
	}
}

func TestMembersAndGet(t *testing.T) {
	obj := []byte(`{"a":{"x":[1,"]}"]},"b\"c":"v,}","d":[],"e":null,"f":-12}`)
	var keys, vals []string
	for k, v := range cjson.Members(obj) {
		keys = append(keys, string(k))
		vals = append(vals, string(v))
	}
	wantKeys := []string{`a`, `b\"c`, `d`, `e`, `f`}
	wantVals := []string{`{"x":[1,"]}"]}`, `"v,}"`, `[]`, `null`, `-12`}
	if strings.Join(keys, "|") != strings.Join(wantKeys, "|") || strings.Join(vals, "|") != strings.Join(wantVals, "|") {
		t.Errorf("Members = %q / %q, want %q / %q", keys, vals, wantKeys, wantVals)
	}
	if v, ok := cjson.Get(obj, "f"); !ok || string(v) != "-12" {
		t.Errorf("Get(f) = %s, %v, want -12, true", v, ok)
	}
	if v, ok := cjson.Get(obj, "zz"); ok {
		t.Errorf("Get(zz) = %s, true, want false", v)
	}
	var elems []string
	for v := range cjson.Elements([]byte(`[1,"a,b",{"c":[2]},[]]`)) {
		elems = append(elems, string(v))
	}
	if got, want := strings.Join(elems, "|"), `1|"a,b"|{"c":[2]}|[]`; got != want {
		t.Errorf("Elements = %s, want %s", got, want)
	}
	// Malformed input must not panic or loop.
	for _, bad := range []string{``, `{`, `{"a`, `{"a":`, `{"a":1,`, `[`, `[1,`, `{"a"}`, `"x"`} {
		for range cjson.Members([]byte(bad)) {
		}
		for range cjson.Elements([]byte(bad)) {
		}
	}
}

func TestUnquoteAndAppendString(t *testing.T) {
	tests := []struct {
		name, s string
	}{
		{"plain", "hello"},
		{"empty", ""},
		{"escapes", "a\"b\\c\nd\te\x00f\x1f"},
		{"unicode", "日本語 \U0001F600 \u2028"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := cjson.AppendString(nil, tt.s)
			canon, err := cjson.Canonical(enc)
			if err != nil || !bytes.Equal(canon, enc) {
				t.Errorf("AppendString(%q) = %s, not canonical (%s, %v)", tt.s, enc, canon, err)
			}
			got, err := cjson.Unquote(enc)
			if err != nil || got != tt.s {
				t.Errorf("Unquote(%s) = %q, %v, want %q", enc, got, err, tt.s)
			}
		})
	}
	for _, bad := range []string{``, `"`, `a`, `"\"`, `"\q"`, `"\uD800"`, `1`} {
		if got, err := cjson.Unquote([]byte(bad)); err == nil {
			t.Errorf("Unquote(%s) = %q, want error", bad, got)
		}
	}
}

// FuzzCanonical checks that for any input Canonical either fails or returns
// valid JSON that is its own canonical form and means the same as the input.
func FuzzCanonical(f *testing.F) {
	seeds := []string{
		`{}`, `[]`, `"a"`, `0`, `-0`, `1e10`, `1.5`, `true`, `null`,
		`{"b":2,"a":1}`, `{"a":{"c":[1,{"e":1,"d":2}],"b":null}}`,
		`{"\u0000":1,"\n":2,"A":3,"\\":4}`, `"\ud83d\ude00\u00e9\/"`,
		"{\"\uFFFF\":1,\"\U00010000\":2}", `{"a":1,"a":2}`, `[1,2,`, "\"\xff\"",
		`9007199254740991`, `9007199254740992`, `123456789012345678901234567890`,
		`1E+2`, `-1.50e1`, `0.00001`,
	}
	for _, s := range seeds {
		for mode := range 3 {
			f.Add([]byte(s), uint8(mode))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte, m uint8) {
		mode := cjson.Mode(m % 3)
		out, err := cjson.Append(nil, in, mode)
		if err != nil {
			return
		}
		if !json.Valid(in) {
			t.Fatalf("Append(%q) accepted invalid JSON", in)
		}
		if !json.Valid(out) {
			t.Fatalf("Append(%q) = %q, not valid JSON", in, out)
		}
		again, err := cjson.Append(nil, out, mode)
		if err != nil {
			t.Fatalf("Append(Append(%q) = %q) error: %v", in, out, err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("Append not idempotent: %q → %q → %q", in, out, again)
		}
		if !sameJSON(t, in, out) {
			t.Fatalf("Append(%q) = %q, which means something else", in, out)
		}
	})
}

// sameJSON reports whether a and b decode to the same value, comparing
// integer literals exactly and other numbers as float64.
func sameJSON(t *testing.T, a, b []byte) bool {
	decode := func(raw []byte) any {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("decode %q: %v", raw, err)
		}
		return v
	}
	return equalValues(decode(a), decode(b))
}

func equalValues(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, v := range a {
			if w, ok := bm[k]; !ok || !equalValues(v, w) {
				return false
			}
		}
		return true
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !equalValues(a[i], bs[i]) {
				return false
			}
		}
		return true
	case json.Number:
		bn, ok := b.(json.Number)
		if !ok {
			return false
		}
		if !strings.ContainsAny(string(a), ".eE") && !strings.ContainsAny(string(bn), ".eE") {
			norm := func(n json.Number) json.Number {
				if n == "-0" {
					return "0"
				}
				return n
			}
			return norm(a) == norm(bn)
		}
		fa, errA := strconv.ParseFloat(string(a), 64)
		fb, errB := strconv.ParseFloat(string(bn), 64)
		return errA == nil && errB == nil && fa == fb
	default:
		return a == b
	}
}

func TestSetAndWithout(t *testing.T) {
	tests := []struct {
		name, obj, key, value, want string
	}{
		{"insert into empty", `{}`, "a", `1`, `{"a":1}`},
		{"insert first", `{"b":1,"c":2}`, "a", `0`, `{"a":0,"b":1,"c":2}`},
		{"insert middle", `{"a":1,"c":2}`, "b", `[]`, `{"a":1,"b":[],"c":2}`},
		{"insert last", `{"a":1,"b":2}`, "z", `"z"`, `{"a":1,"b":2,"z":"z"}`},
		{"replace", `{"a":1,"b":2,"c":3}`, "b", `{"x":1}`, `{"a":1,"b":{"x":1},"c":3}`},
		{"escaped existing key", `{"\n":1,"b":2}`, "a", `3`, `{"\n":1,"a":3,"b":2}`},
		{"escaped new key", `{"a":1}`, "\"", `2`, `{"\"":2,"a":1}`},
		{"not an object", `[1]`, "a", `1`, `{"a":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cjson.Set(nil, []byte(tt.obj), tt.key, []byte(tt.value))
			if string(got) != tt.want {
				t.Errorf("Set(%s, %q, %s) = %s, want %s", tt.obj, tt.key, tt.value, got, tt.want)
			}
			if canon, err := cjson.Canonical(got); err != nil || !bytes.Equal(canon, got) {
				t.Errorf("Set(%s, %q, %s) = %s, not canonical", tt.obj, tt.key, tt.value, got)
			}
		})
	}
	got := cjson.Without(nil, []byte(`{"a":1,"signatures":{"x":{}},"type":"t","unsigned":{"age":1}}`), "signatures", "unsigned")
	if want := `{"a":1,"type":"t"}`; string(got) != want {
		t.Errorf("Without = %s, want %s", got, want)
	}
	if got := cjson.Without(nil, []byte(`{"a":1}`), "a"); string(got) != `{}` {
		t.Errorf("Without(all) = %s, want {}", got)
	}
}
