package header

import (
	"net/http"
	"strings"
	"testing"
)

func TestBearer(t *testing.T) {
	tests := []struct {
		name      string
		values    []string
		token     string
		present   bool
		ok        bool
		canonical bool
	}{
		{"absent", nil, "", false, false, false},
		{"canonical", []string{"Bearer abc.def"}, "abc.def", true, true, true},
		{"lower case scheme", []string{"bearer abc"}, "abc", true, true, false},
		{"upper case scheme", []string{"BEARER abc"}, "abc", true, true, false},
		{"two spaces", []string{"Bearer  abc"}, "abc", true, true, false},
		{"tab", []string{"Bearer\tabc"}, "abc", true, true, false},
		{"leading space", []string{" Bearer abc"}, "abc", true, true, false},
		{"trailing space", []string{"Bearer abc "}, "abc", true, true, false},
		{"no token", []string{"Bearer"}, "", true, false, false},
		{"only spaces", []string{"Bearer    "}, "", true, false, false},
		{"no separator", []string{"Bearerabc"}, "", true, false, false},
		{"basic scheme", []string{"Basic dXNlcjpwYXNz"}, "", true, false, false},
		{"two tokens", []string{"Bearer abc def"}, "", true, false, false},
		{"repeated header", []string{"Bearer abc", "Bearer abc"}, "", true, false, false},
		{"non-ASCII", []string{"Bearer abcé"}, "", true, false, false},
		{"control character", []string{"Bearer ab\x00c"}, "", true, false, false},
		{"too long", []string{"Bearer " + strings.Repeat("a", MaxCredentialLen+1)}, "", true, false, false},
		{"longest allowed", []string{"Bearer " + strings.Repeat("a", MaxCredentialLen)}, strings.Repeat("a", MaxCredentialLen), true, true, true},
		{"empty value", []string{""}, "", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.values != nil {
				h["Authorization"] = tt.values
			}
			token, present, ok, canonical := Bearer(h)
			if Canonical(h) != canonical {
				t.Errorf("Canonical(%q) = %v, Bearer says %v", tt.values, !canonical, canonical)
			}
			if token != tt.token || present != tt.present || ok != tt.ok || canonical != tt.canonical {
				t.Errorf("Bearer(%q) = %q, %v, %v, %v; want %q, %v, %v, %v", tt.values, token, present, ok, canonical, tt.token, tt.present, tt.ok, tt.canonical)
			}
		})
	}
}

func TestSingle(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		value   string
		present bool
		ok      bool
	}{
		{"absent", nil, "", false, false},
		{"plain", []string{"key"}, "key", true, true},
		{"trimmed", []string{" \tkey \t"}, "key", true, true},
		{"empty", []string{""}, "", true, false},
		{"spaces only", []string{"   "}, "", true, false},
		{"repeated", []string{"key", "key"}, "", true, false},
		{"inner space", []string{"k ey"}, "", true, false},
		{"newline", []string{"key\n"}, "", true, false},
		{"non-ASCII", []string{"kéy"}, "", true, false},
		{"64 KiB", []string{strings.Repeat("k", 64<<10)}, "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.values != nil {
				h["X-Api-Key"] = tt.values
			}
			value, present, ok := Single(h, "X-Api-Key")
			if value != tt.value || present != tt.present || ok != tt.ok {
				t.Errorf("Single(%q) = %q, %v, %v; want %q, %v, %v", tt.values, value, present, ok, tt.value, tt.present, tt.ok)
			}
		})
	}
}

func TestLooksLikeJWT(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", true},
		{"a.b.c", true},
		{"a-_.b_-.c9", true},
		{"a.b", false},
		{"a.b.c.d", false},
		{".b.c", false},
		{"a..c", false},
		{"a.b.", false},
		{"a.b.c=", false},
		{"a+b.c.d", false},
		{"mcpauth_0123456789", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := LooksLikeJWT(tt.s); got != tt.want {
			t.Errorf("LooksLikeJWT(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// FuzzBearer checks that header parsing never panics, and that whatever it
// accepts is a well-formed credential taken from the header.
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc ", "Bearer", "Basic x", "Bearer a b", "Bearer \x00", "BEARER\ta.b.c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Authorization": {v}, "X-Api-Key": {v}}
		token, present, ok, canonical := Bearer(h)
		if Canonical(h) != canonical {
			t.Fatalf("Canonical(%q) disagrees with Bearer", v)
		}
		if !present {
			t.Fatal("present = false for a header that is there")
		}
		if ok {
			if !Token(token) || !strings.Contains(v, token) {
				t.Fatalf("Bearer(%q) accepted %q", v, token)
			}
			if canonical && v != "Bearer "+token {
				t.Fatalf("Bearer(%q) canonical but not in canonical form", v)
			}
			if !strings.EqualFold(strings.Fields(v)[0], "bearer") || len(strings.Fields(v)) != 2 {
				t.Fatalf("Bearer(%q) accepted a header that is not one bearer token", v)
			}
		} else if token != "" || canonical {
			t.Fatalf("Bearer(%q) refused but returned %q, canonical %v", v, token, canonical)
		}
		value, present, ok := Single(h, "X-Api-Key")
		if !present || (ok && (!Token(value) || !strings.Contains(v, value))) || (!ok && value != "") {
			t.Fatalf("Single(%q) = %q, %v, %v", v, value, present, ok)
		}
		_ = LooksLikeJWT(v)
	})
}
