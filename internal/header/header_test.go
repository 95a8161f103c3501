package header

import (
	"math/rand/v2"
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
			if token2, present2, ok2, canonical2, jwt := BearerJWT(h); token2 != token || present2 != present || ok2 != ok || canonical2 != canonical || jwt != (ok && LooksLikeJWT(token)) {
				t.Errorf("BearerJWT(%q) = %q, %v, %v, %v, %v; Bearer and LooksLikeJWT disagree", tt.values, token2, present2, ok2, canonical2, jwt)
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

// looksLikeJWTReference is LooksLikeJWT as it was before the class table:
// the byte-by-byte scan that the table-driven one must agree with.
func looksLikeJWTReference(s string) bool {
	if strings.IndexByte(s, '.') < 0 {
		return false
	}
	dots := 0
	seg := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if seg == 0 {
				return false
			}
			dots++
			seg = 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			seg++
		default:
			return false
		}
	}
	return dots == 2 && seg > 0
}

// tokenReference is Token as it was before the class table.
func tokenReference(s string) bool {
	if len(s) == 0 || len(s) > MaxCredentialLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// randomCredential returns a string that is often almost a JWT: mostly
// base64url, with dots, and now and then a byte that is neither, at any
// position (the table-driven scan reads four bytes at a time, so a bad byte
// in the tail must count as much as one in the body).
func randomCredential(r *rand.Rand) string {
	const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	odd := []byte{'=', '+', '/', ' ', '\t', 0, 0x1f, '!', '~', 0x7f, 0x80, 0xff, '"', ','}
	n := r.IntN(24)
	if r.IntN(8) == 0 {
		n = r.IntN(2000)
	}
	b := make([]byte, n)
	for i := range b {
		switch k := r.IntN(100); {
		case k < 8:
			b[i] = '.'
		case k < 10:
			b[i] = odd[r.IntN(len(odd))]
		case k < 11:
			b[i] = byte(r.IntN(256))
		default:
			b[i] = b64url[r.IntN(len(b64url))]
		}
	}
	// Many of them with exactly two dots, in random places.
	if n >= 3 && r.IntN(2) == 0 {
		for i := range b {
			if b[i] == '.' {
				b[i] = 'A'
			}
		}
		b[r.IntN(n)] = '.'
		b[r.IntN(n)] = '.'
	}
	return string(b)
}

// TestClassTableMatchesReference compares LooksLikeJWT, Token and the JWT
// answer of BearerJWT with the byte-by-byte implementations they replaced, on every single byte, every
// pair of bytes around dots, and 200,000 random strings.
func TestClassTableMatchesReference(t *testing.T) {
	check := func(s string) {
		t.Helper()
		if got, want := LooksLikeJWT(s), looksLikeJWTReference(s); got != want {
			t.Fatalf("LooksLikeJWT(%q) = %v, the reference says %v", s, got, want)
		}
		if got, want := Token(s), tokenReference(s); got != want {
			t.Fatalf("Token(%q) = %v, the reference says %v", s, got, want)
		}
		h := http.Header{"Authorization": {"Bearer " + s}}
		want := strings.Trim(s, " \t") // Bearer trims the token
		if token, _, ok, _, jwt := BearerJWT(h); ok != tokenReference(want) || ok && token != want || jwt != (ok && looksLikeJWTReference(want)) {
			t.Fatalf("BearerJWT(%q) = %q, ok %v, JWT %v", "Bearer "+s, token, ok, jwt)
		}
	}
	for c := range 256 {
		for _, f := range []string{"%c", "a.b.%c", "%c.b.c", "a.%c.c", "aaaa.bbbb.cccc%c", "aaaa.bbbb.ccc%c", "a.b.cccccccc%c"} {
			check(strings.Replace(f, "%c", string([]byte{byte(c)}), 1))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	jwts := 0
	for range 200000 {
		s := randomCredential(r)
		if LooksLikeJWT(s) {
			jwts++
		}
		check(s)
	}
	// The comparison means something only if both answers occur often.
	if jwts < 10000 {
		t.Fatalf("only %d of the random strings look like JWTs", jwts)
	}
}

// FuzzLooksLikeJWT compares LooksLikeJWT and Token with the reference
// implementations on any input.
func FuzzLooksLikeJWT(f *testing.F) {
	for _, s := range []string{"a.b.c", "a..c", ".b.c", "a.b.", "a.b.c.d", "aaaa.bbbb.cccc=", "eyJh.eyJz.c2ln", "mcpk_x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := LooksLikeJWT(s), looksLikeJWTReference(s); got != want {
			t.Fatalf("LooksLikeJWT(%q) = %v, the reference says %v", s, got, want)
		}
		if got, want := Token(s), tokenReference(s); got != want {
			t.Fatalf("Token(%q) = %v, the reference says %v", s, got, want)
		}
	})
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
		if _, _, _, _, jwt := BearerJWT(h); jwt != (ok && looksLikeJWTReference(token)) {
			t.Fatalf("BearerJWT(%q) says JWT %v", v, jwt)
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
