package mcpauth

import (
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// fixedKey returns a well-formed generated key built from seed, so that the
// tests below can check messages against known key text without the
// one-in-ten-thousand chance that a random key shares four characters with a
// message word.
func fixedKey(seed byte) string {
	body := []byte(APIKeyPrefix)
	for i := range keyRandomLen {
		body = append(body, base62[(int(seed)*7+i*13)%62])
	}
	sum := keyChecksum(string(body))
	return string(body) + string(sum[:])
}

// leaksKey reports a substring of key, at least 4 bytes long, that msg holds.
func leaksKey(msg, key string) (string, bool) {
	for i := 0; i+4 <= len(key); i++ {
		if w := key[i : i+4]; strings.Contains(msg, w) {
			return w, true
		}
	}
	return "", false
}

// TestAPIKeysCopiesConfiguration: a caller who reuses or edits a roles or
// scopes slice after configuring a key must not change what the key grants.
func TestAPIKeysCopiesConfiguration(t *testing.T) {
	viewerKey, adminKey, addedKey := fixedKey(1), fixedKey(2), fixedKey(3)
	roles := []string{"viewer"}
	scopes := []string{"tools:read"}
	keys, err := NewAPIKeys(APIKey{Key: viewerKey, Subject: "v", Roles: roles, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	// The caller reuses its slices for the next key.
	roles[0], scopes[0] = "admin", "tools:write"
	if err := keys.Add(APIKey{Key: adminKey, Subject: "a", Roles: roles, Scopes: scopes}); err != nil {
		t.Fatal(err)
	}
	// And once more, after Add.
	roles[0], scopes[0] = "root", "tools:delete"

	for _, tt := range []struct {
		key           string
		roles, scopes []string
	}{
		{viewerKey, []string{"viewer"}, []string{"tools:read"}},
		{adminKey, []string{"admin"}, []string{"tools:write"}},
	} {
		p, err := keys.Authenticate(apiKeyRequest("X-API-Key", tt.key))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.Roles, tt.roles) || !slices.Equal(p.Scopes, tt.scopes) {
			t.Errorf("%s: roles %q scopes %q, want %q %q", p.Subject, p.Roles, p.Scopes, tt.roles, tt.scopes)
		}
		if got := p.tokenInfo().Scopes; !slices.Equal(got, tt.scopes) {
			t.Errorf("%s: go-sdk sees scopes %q, want %q", p.Subject, got, tt.scopes)
		}
	}
	if got, want := keys.Roles(), []string{"admin", "viewer"}; !slices.Equal(got, want) {
		t.Errorf("Roles() = %q, want %q", got, want)
	}

	// A principal is shared by every request of its key. A handler that
	// appends to its Roles (to build a list of its own) must get a new array,
	// not write into the one the next request reads: the kept slices have no
	// spare capacity, whatever capacity the caller's had, or append's
	// rounding gave a copy (17 strings round up to 18).
	many := make([]string, 17, 32)
	for i := range many {
		many[i] = "r" + string(rune('a'+i))
	}
	if err := keys.Add(APIKey{Key: addedKey, Roles: many[:1], Scopes: many[:17]}); err != nil {
		t.Fatal(err)
	}
	first, err := keys.Authenticate(apiKeyRequest("X-API-Key", addedKey))
	if err != nil {
		t.Fatal(err)
	}
	mine := append(first.Roles, "admin")
	mineScopes := append(first.Scopes, "tools:write")
	second, err := keys.Authenticate(apiKeyRequest("X-API-Key", addedKey))
	if err != nil {
		t.Fatal(err)
	}
	_ = append(second.Roles, "viewer")
	_ = append(second.Scopes, "tools:read")
	if mine[1] != "admin" || mineScopes[17] != "tools:write" {
		t.Errorf("one request's append was overwritten by another's: %q, %q", mine[1], mineScopes[17])
	}
	if many[1] != "rb" {
		t.Errorf("a handler's append wrote into the caller's slice: %q", many[1])
	}
	if cap(first.Roles) != len(first.Roles) || cap(first.Scopes) != len(first.Scopes) {
		t.Errorf("kept slices have spare capacity: roles %d/%d, scopes %d/%d", len(first.Roles), cap(first.Roles), len(first.Scopes), cap(first.Scopes))
	}
}

// TestParseAPIKeysMistakes feeds ParseAPIKeys the mistakes people make when
// writing MCP_API_KEYS: each is refused with a message that names the cause
// and the way to write it, and that holds no four characters of any key.
func TestParseAPIKeysMistakes(t *testing.T) {
	k1, k2 := fixedKey(10), fixedKey(20)
	op := "Zq8xWv3Rt7Yp2Lm9Kd" // an operator-chosen key
	long := func(n int) string { return strings.Repeat("s", n) }
	roles := func(n int) string {
		r := make([]string, n)
		for i := range r {
			r[i] = "r"
		}
		return strings.Join(r, "|")
	}
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"semicolon between entries", k1 + ":alice;" + k2 + ":bob", []string{"entry 1", "';'", "entries are separated by ','"}},
		{"semicolon between entries with roles", k1 + ":alice:admin;" + k2 + ":bob:viewer", []string{"entry 1", "';'", "entries are separated by ','"}},
		{"semicolon between bare keys", k1 + ";" + k2, []string{"entry 1", "';'", "entries are separated by ','"}},
		{"one entry per line", k1 + ":alice\n" + k2 + ":bob", []string{"entry 1", "line break", "entries are separated by ','"}},
		{"one entry per line, CRLF", k1 + ":alice:admin\r\n" + k2 + ":bob:viewer\r\n", []string{"entry 1", "line break"}},
		{"one bare key per line", k1 + "\n" + k2, []string{"entry 1", "line break"}},
		{"space between entries", k1 + ":alice " + k2 + ":bob", []string{"entry 1", "subject contains white space", "entries are separated by ','"}},
		{"space between bare keys", k1 + " " + k2, []string{"entry 1", "key contains white space"}},
		{"tab in a role", k1 + ":alice:ad\tmin", []string{"entry 1", "role 1 contains white space"}},
		{"double-quoted entry", `"` + k1 + `:alice"`, []string{"entry 1", "quote", "remove them"}},
		{"single-quoted entry", `'` + k1 + `:alice'`, []string{"entry 1", "quote", "remove them"}},
		{"double-quoted key", `"` + k1 + `":alice`, []string{"entry 1", "key begins or ends with a quote", "remove them"}},
		{"key ends with a quote", op + `':alice`, []string{"entry 1", "key begins or ends with a quote"}},
		{"backquoted bare key", "`" + k1 + "`", []string{"entry 1", "quote"}},
		{"quoted second entry", k2 + `,"` + k1 + `"`, []string{"entry 2", "quote"}},
		{"quoted subject", k1 + `:"alice"`, []string{"entry 1", "subject contains a quote", "remove them"}},
		{"quoted role", k1 + `:alice:'admin'`, []string{"entry 1", "role 1 contains a quote"}},
		{"roles separated by commas", k1 + ":alice:admin,editor", []string{"entry 2 looks like a role", "separate roles with '|'"}},
		{"roles separated by commas, spaced", k1 + ":alice:admin, editor, viewer", []string{"entry 2 looks like a role", "'|'"}},
		{"roles separated by colons", k1 + ":alice:admin:editor", []string{"entry 1", "4 fields", "':' separates", "'|'"}},
		{"colon in an operator key", "Zq8x:Wv3Rt7Yp2Lm9Kd:alice", []string{"entry 1", "shorter than 16", "':' separates", "cannot contain ':'"}},
		{"colon in a generated key", k1[:20] + ":" + k1[20:] + ":alice", []string{"entry 1", "wrong checksum", "cannot contain ':'"}},
		{"short bare key", "Zq8xWv3R", []string{"entry 1", "shorter than 16"}},
		{"control character in subject", k1 + ":al\x1b[31mice", []string{"entry 1", "subject contains a control character"}},
		{"DEL in subject", k1 + ":al\x7fice", []string{"entry 1", "control character"}},
		{"bidi override in subject", k1 + ":alice\u202eadmin", []string{"entry 1", "subject contains an invisible formatting character"}},
		{"no-break space in subject", k1 + ":alice\u00a0bob", []string{"entry 1", "white space"}},
		{"invalid UTF-8 in subject", k1 + ":al\xffice", []string{"entry 1", "subject is not valid UTF-8"}},
		{"subject too long", k1 + ":" + long(257), []string{"entry 1", "subject is longer than 256 bytes"}},
		{"role too long", k1 + ":alice:" + long(129), []string{"entry 1", "role 1 is longer than 128 bytes"}},
		{"too many roles", k1 + ":alice:" + roles(65), []string{"entry 1", "more than 64 roles"}},
		{"roles without a subject", k1 + ":admin|editor", []string{"entry 1", "subject contains '|'", "KEY:SUBJECT:ROLE|ROLE"}},
		{"second entry bad", op + ":alice," + k1 + ":bo b", []string{"entry 2", "subject contains white space"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAPIKeys(tt.in)
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "mcpauth: "+EnvAPIKeys+" entry ") {
				t.Errorf("error %q does not start with the variable and entry", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			for _, key := range []string{k1, k2, op} {
				if w, ok := leaksKey(msg, key); ok {
					t.Errorf("error %q holds %q of a key", msg, w)
				}
			}
		})
	}

	// What the rules still allow.
	for _, in := range []string{
		k1 + ":alice@example.com:admin|editor",
		k1 + ":José:team/ops",
		op + "'x:svc-1", // a quote inside an operator key is part of it
		k1 + " : alice : admin | viewer ,\n" + k2 + ":bob\n",
		k1 + ":" + long(256) + ":" + strings.Repeat("r", 128),
		k1 + ":alice:" + roles(64),
	} {
		if _, err := ParseAPIKeys(in); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// TestNewAPIKeysValidates applies the subject and role rules of MCP_API_KEYS
// to keys configured in code, and bounds what a key can carry.
func TestNewAPIKeysValidates(t *testing.T) {
	k := fixedKey(30)
	many := func(n int, s string) []string { return slices.Repeat([]string{s}, n) }
	bad := []struct {
		name string
		key  APIKey
		want string
	}{
		{"semicolon in subject", APIKey{Key: k, Subject: "alice;" + k}, "subject contains ';'"},
		{"comma in subject", APIKey{Key: k, Subject: "alice,bob"}, "subject contains ','"},
		{"newline in subject", APIKey{Key: k, Subject: "alice\nlevel=ERROR"}, "subject contains white space"},
		{"space in subject", APIKey{Key: k, Subject: "alice bob"}, "white space"},
		{"quote in subject", APIKey{Key: k, Subject: `alice"`}, "quote"},
		{"backquote in subject", APIKey{Key: k, Subject: "`alice`"}, "quote"},
		{"control in subject", APIKey{Key: k, Subject: "a\x00b"}, "control character"},
		{"C1 control in subject", APIKey{Key: k, Subject: "a\u0085b"}, "subject contains"},
		{"zero-width space in subject", APIKey{Key: k, Subject: "ali\u200bce"}, "invisible formatting character"},
		{"invalid UTF-8 subject", APIKey{Key: k, Subject: "\xc3"}, "not valid UTF-8"},
		{"long subject", APIKey{Key: k, Subject: strings.Repeat("a", 257)}, "longer than 256 bytes"},
		{"empty role", APIKey{Key: k, Roles: []string{"admin", ""}}, "role 2 is empty"},
		{"space in role", APIKey{Key: k, Roles: []string{"ad min"}}, "role 1 contains white space"},
		{"comma in role", APIKey{Key: k, Roles: []string{"admin,editor"}}, "role 1 contains ','"},
		{"long role", APIKey{Key: k, Roles: []string{strings.Repeat("r", 129)}}, "longer than 128 bytes"},
		{"65 roles", APIKey{Key: k, Roles: many(65, "r")}, "more than 64 roles"},
		{"empty scope", APIKey{Key: k, Scopes: []string{""}}, "scope 1 is empty"},
		{"space in scope", APIKey{Key: k, Scopes: []string{"tools read"}}, "scope 1 is not an RFC 6749 scope-token"},
		{"quote in scope", APIKey{Key: k, Scopes: []string{`tools"`}}, "scope-token"},
		{"backslash in scope", APIKey{Key: k, Scopes: []string{`tools\read`}}, "scope-token"},
		{"non-ASCII scope", APIKey{Key: k, Scopes: []string{"töols"}}, "scope-token"},
		{"long scope", APIKey{Key: k, Scopes: []string{strings.Repeat("s", 129)}}, "longer than 128 bytes"},
		{"65 scopes", APIKey{Key: k, Scopes: many(65, "s")}, "more than 64 scopes"},
		{"quoted key", APIKey{Key: `"` + k + `"`}, "quote"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s accepted %+v", what, tt.key)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: error %q lacks %q", what, err, tt.want)
				}
				if w, ok := leaksKey(err.Error(), k); ok {
					t.Errorf("%s: error %q holds %q of the key", what, err, w)
				}
			}
			_, err := NewAPIKeys(tt.key)
			check("NewAPIKeys", err)
			keys, err := NewAPIKeys()
			if err != nil {
				t.Fatal(err)
			}
			check("Add", keys.Add(tt.key))
			if keys.table.len() != 0 {
				t.Error("Add kept a refused key")
			}
		})
	}
	good := []APIKey{
		{Key: k, Subject: "José|ops:team/1", Roles: many(64, "r"), Scopes: many(64, "s")},
		{Key: fixedKey(31), Subject: strings.Repeat("a", 256), Roles: []string{strings.Repeat("r", 128), "tools:read"},
			Scopes: []string{strings.Repeat("s", 128), "!#[]~", "https://api.example.com/read"}},
		{Hash: HashAPIKey(fixedKey(32))},
	}
	if _, err := NewAPIKeys(good...); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseAPIKeys: ParseAPIKeys never panics; what it accepts, NewAPIKeys
// accepts (but for a key given twice) and carries no separator, white space,
// control character or quote in a subject or role; and no error of either
// holds text of the input.
//
// "Holds text of the input" is checked soundly: an error may not contain any
// 8-byte window of the input unless that window also occurs in apikey.go,
// where every fixed part of the messages is written. A message that quoted a
// key, a subject or a role would fail on nearly any input; only a fixed word
// that the input happens to repeat is let through.
func FuzzParseAPIKeys(f *testing.F) {
	src, err := os.ReadFile("apikey.go")
	if err != nil {
		f.Fatal(err)
	}
	source := string(src)
	k1, k2 := fixedKey(40), fixedKey(41)
	for _, s := range []string{
		"", k1, k1 + ":alice:admin|editor, " + k2 + ":bob\n",
		k1 + ":alice;" + k2 + ":bob", k1 + ":alice\n" + k2 + ":bob", `"` + k1 + `:alice"`,
		k1 + ":alice:admin,editor", k1 + ":alice:admin:editor", "Zq8x:Wv3Rt7Yp2Lm9Kd:alice",
		k1[:20] + ":" + k1[20:], corrupt(k1), k1 + "," + k1, k1 + ":al\x1bice", k1 + ":\u202e",
		"operator-chosen-key:svc:" + strings.Repeat("r|", 70), "::", ",,:", "\xff\xfe",
		"0000000000000000:|", // found by the fuzzer: roles where the subject goes
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		keys, err := ParseAPIKeys(in)
		if err == nil {
			for _, k := range keys {
				for _, s := range append([]string{k.Subject}, k.Roles...) {
					if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool {
						return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(";,:|'\"`", r)
					}) {
						t.Fatalf("accepted subject or role %q", s)
					}
				}
			}
			_, err = NewAPIKeys(keys...)
			if err != nil && !strings.Contains(err.Error(), "configured twice") {
				t.Fatalf("ParseAPIKeys accepted what NewAPIKeys refuses: %v", err)
			}
		}
		if err == nil {
			return
		}
		msg := err.Error()
		for i := 0; i+8 <= len(in); i++ {
			if w := in[i : i+8]; strings.Contains(msg, w) && !strings.Contains(source, w) {
				t.Fatalf("error %q holds %q of the input", msg, w)
			}
		}
	})
}
