package jose

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeSegment(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
		ok   bool
	}{
		{"YWJj", 16, "abc", true},
		{"YWI", 16, "ab", true},
		{"YWI=", 16, "", false},       // padding
		{"YW\nJj", 16, "", false},     // line break, which base64 would skip
		{"YW\rJj", 16, "", false},     // carriage return
		{"YWJ", 16, "", false},        // non-zero trailing bits
		{"YWJj", 2, "", false},        // larger than max
		{"YW+j", 16, "", false},       // standard, not URL, alphabet
		{"", 16, "", true},            // empty
		{"_-8", 16, "\xff\xef", true}, // URL alphabet
	}
	for _, tt := range tests {
		got, err := DecodeSegment(tt.in, tt.max)
		if (err == nil) != tt.ok || (tt.ok && string(got) != tt.want) {
			t.Errorf("DecodeSegment(%q, %d) = %q, %v; want %q, ok %v", tt.in, tt.max, got, err, tt.want, tt.ok)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"plain", `{"sub":"a","n":1}`, true},
		{"nested", `{"a":{"b":[{"c":1},{"c":2}]}}`, true},
		{"same name in sibling objects", `{"a":{"x":1},"b":{"x":2}}`, true},
		{"duplicate member", `{"sub":"a","sub":"b"}`, false},
		{"duplicate by escape", `{"sub":"a","s\u0075b":"b"}`, false},
		{"nested duplicate", `{"realm_access":{"roles":["a"],"roles":["admin"]}}`, false},
		{"duplicate in an array's object", `{"a":[{"x":1,"x":2}]}`, false},
		{"invalid UTF-8", "{\"sub\":\"alice\xff\"}", false},
		{"unpaired high surrogate", `{"sub":"alice\ud800"}`, false},
		{"unpaired low surrogate", `{"sub":"alice\udc00"}`, false},
		{"surrogate pair", `{"sub":"\ud83d\ude00"}`, true},
		{"not an object", `["a"]`, false},
		{"null", `null`, false},
		{"too deep", `{"a":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`, false},
		{"within depth", `{"a":` + strings.Repeat("[", 10) + strings.Repeat("]", 10) + `}`, true},
		{"trailing garbage", `{"a":1}x`, false},
		{"string holding braces", `{"a":"{\"a\":1,\"a\":2}"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeObject([]byte(tt.in), 16)
			if (err == nil) != tt.ok {
				t.Fatalf("DecodeObject(%s) = %v, %v; want ok %v", tt.in, m, err, tt.ok)
			}
		})
	}
}

func TestNumericDate(t *testing.T) {
	claims := map[string]any{"exp": 1.5e9, "frac": 1700000000.25, "str": "1700000000", "huge": 1e300, "neg": -1e300}
	tests := []struct {
		name        string
		want        time.Time
		present, ok bool
	}{
		{"exp", time.Unix(1_500_000_000, 0), true, true},
		{"frac", time.Unix(1_700_000_000, 250_000_000), true, true},
		{"str", time.Time{}, true, false},
		{"missing", time.Time{}, false, true},
		{"huge", time.Unix(253402300799, 0), true, true},
		{"neg", time.Unix(-253402300799, 0), true, true},
	}
	for _, tt := range tests {
		got, present, ok := NumericDate(claims, tt.name)
		if !got.Equal(tt.want) || present != tt.present || ok != tt.ok {
			t.Errorf("NumericDate(%s) = %v, %v, %v; want %v, %v, %v", tt.name, got, present, ok, tt.want, tt.present, tt.ok)
		}
	}
}

func TestAudience(t *testing.T) {
	tests := []struct {
		in   any
		want []string
		ok   bool
	}{
		{nil, nil, true},
		{"", nil, true},
		{"https://a", []string{"https://a"}, true},
		{[]any{"x", "y"}, []string{"x", "y"}, true},
		{[]any{"x", 1.0}, nil, false},
		{1.0, nil, false},
	}
	for _, tt := range tests {
		got, ok := Audience(tt.in)
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
			t.Errorf("Audience(%v) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFoldKey(t *testing.T) {
	for _, tt := range []struct{ a, b string }{{"roles", "ROLES"}, {"roles", "roleſ"}, {"Kelvin", "\u212aelvin"}} {
		if FoldKey(tt.a) != FoldKey(tt.b) {
			t.Errorf("FoldKey(%q) != FoldKey(%q)", tt.a, tt.b)
		}
	}
	if FoldKey("roles") == FoldKey("rules") {
		t.Error("roles and rules fold alike")
	}
}

// FuzzDecodeObject: DecodeObject never panics, and what it accepts
// encoding/json reads the same way.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1,"a":2}`, `{"s\u0075b":1,"sub":2}`, `{"a":{"b":[{"c":"\ud83d\ude00"}]}}`, `{"a":"\ud800"}`, "{\"a\":\"\xff\"}", `[[[[]]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := DecodeObject(raw, 16)
		if err != nil {
			return
		}
		var want map[string]any
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("accepted what encoding/json refuses: %q", raw)
		}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("read differently: %v, encoding/json %v", m, want)
		}
	})
}
