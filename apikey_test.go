package mcpauth

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustGenerate(t testing.TB) string {
	t.Helper()
	k, err := GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// corrupt changes the last character of a generated key, so that its
// checksum no longer matches.
func corrupt(k string) string {
	last := byte('a')
	if k[len(k)-1] == last {
		last = 'b'
	}
	return k[:len(k)-1] + string(last)
}

func TestGenerateAPIKey(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k := mustGenerate(t)
		if len(k) != generatedLen || !strings.HasPrefix(k, APIKeyPrefix) {
			t.Fatalf("key %q: wrong length or prefix", k)
		}
		if !validChecksum(k) {
			t.Fatalf("key %q: checksum does not verify", k)
		}
		if seen[k] {
			t.Fatal("the same key was generated twice")
		}
		seen[k] = true
	}
	// Every single-character typo in the random part or the checksum is
	// caught by the checksum.
	k := mustGenerate(t)
	for i := len(APIKeyPrefix); i < len(k); i++ {
		b := []byte(k)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		if validChecksum(string(b)) {
			t.Errorf("typo at %d not caught", i)
		}
	}
	if validChecksum(k[:len(k)-1]) {
		t.Error("truncated key passes the checksum")
	}
}

func TestParseAPIKeys(t *testing.T) {
	k1, k2 := mustGenerate(t), mustGenerate(t)
	tests := []struct {
		name    string
		in      string
		want    []APIKey
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"only separators", " , ,\n", nil, ""},
		{"bare key", k1, []APIKey{{Key: k1}}, ""},
		{"subject", k1 + ":alice", []APIKey{{Key: k1, Subject: "alice"}}, ""},
		{"roles", k1 + ":alice:editor|viewer", []APIKey{{Key: k1, Subject: "alice", Roles: []string{"editor", "viewer"}}}, ""},
		{"two entries, trailing newline", " " + k1 + ":alice , " + k2 + ":bob:admin\n", []APIKey{{Key: k1, Subject: "alice"}, {Key: k2, Subject: "bob", Roles: []string{"admin"}}}, ""},
		{"spaces around fields", k1 + " : alice : admin | viewer ", []APIKey{{Key: k1, Subject: "alice", Roles: []string{"admin", "viewer"}}}, ""},
		{"empty entries ignored", k1 + ",,", []APIKey{{Key: k1}}, ""},
		{"too many fields", k1 + ":a:b:c", nil, "entry 1"},
		{"empty subject", k1 + "::admin", nil, "entry 1: the subject is empty"},
		{"empty role", k2 + "," + k1 + ":a:admin||viewer", nil, "entry 2: role 2 is empty"},
		{"empty key", ":alice", nil, "entry 1: the key is empty"},
		{"short key", "shortkey:alice", nil, "entry 1: the key is shorter"},
		{"non-ASCII key", "ключ-ключ-ключ-ключ", nil, "entry 1"},
		{"bad checksum", corrupt(k1) + ":alice", nil, "wrong checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAPIKeys(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				// The error names the entry, never the key.
				for _, secret := range []string{k1, k2, k1[:20], "shortkey"} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error %q quotes the key", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Key != w.Key || g.Subject != w.Subject || strings.Join(g.Roles, "|") != strings.Join(w.Roles, "|") {
					t.Errorf("key %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestAPIKeysFromEnv(t *testing.T) {
	k := mustGenerate(t)
	t.Setenv(EnvAPIKeys, k+":alice:admin\n")
	keys, err := APIKeysFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	p, err := keys.Authenticate(apiKeyRequest("X-API-Key", k))
	if err != nil || p.Subject != "alice" || !slices.Contains(p.Roles, "admin") {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	t.Setenv(EnvAPIKeys, " ,\n")
	if _, err := APIKeysFromEnv(); err == nil {
		t.Error("APIKeysFromEnv with no key: no error")
	}
}

func TestNewAPIKeysErrors(t *testing.T) {
	k := mustGenerate(t)
	tests := []struct {
		name string
		keys []APIKey
	}{
		{"duplicate", []APIKey{{Key: k}, {Key: k, Subject: "other"}}},
		{"duplicate by hash", []APIKey{{Key: k}, {Hash: HashAPIKey(k)}}},
		{"key and hash", []APIKey{{Key: k, Hash: HashAPIKey(k)}}},
		{"neither", []APIKey{{Subject: "alice"}}},
		{"bad hash", []APIKey{{Hash: "abc"}}},
		{"short", []APIKey{{Key: "0123456789"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAPIKeys(tt.keys...)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), k) {
				t.Fatalf("error %q quotes the key", err)
			}
		})
	}
}

func apiKeyRequest(name, value string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	if name != "" {
		r.Header.Add(name, value)
	}
	return r
}

func TestAPIKeysAuthenticate(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	active, expiring, revoked, hashed := mustGenerate(t), mustGenerate(t), mustGenerate(t), mustGenerate(t)
	custom := "a-long-operator-chosen-key"
	keys, err := NewAPIKeys(
		APIKey{Key: active, Subject: "alice", Roles: []string{"admin"}, Scopes: []string{"tools:read"}},
		APIKey{Key: expiring, Subject: "bob", ExpiresAt: now.Add(time.Hour)},
		APIKey{Key: revoked, Subject: "carol"},
		APIKey{Hash: HashAPIKey(hashed), Subject: "dave"},
		APIKey{Key: custom},
	)
	if err != nil {
		t.Fatal(err)
	}
	keys.now = func() time.Time { return now }
	if !keys.Revoke(revoked) {
		t.Fatal("Revoke: key not found")
	}
	badChecksum := corrupt(active)
	tests := []struct {
		name    string
		header  string
		value   string
		subject string
		err     error
	}{
		{"X-API-Key", "X-API-Key", active, "alice", nil},
		{"lower-case header name", "x-api-key", active, "alice", nil},
		{"bearer", "Authorization", "Bearer " + active, "alice", nil},
		{"bearer odd case and spacing", "Authorization", "bEaReR \t " + active + " ", "alice", nil},
		{"stored as hash", "X-API-Key", hashed, "dave", nil},
		{"operator key gets a derived subject", "X-API-Key", custom, "apikey-" + apiKeyID(custom), nil},
		{"not yet expired", "X-API-Key", expiring, "bob", nil},
		{"no credentials", "", "", "", ErrNoCredentials},
		{"other scheme", "Authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "", ErrNoCredentials},
		{"JWT is left to the JWT verifier", "Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "", ErrNoCredentials},
		{"unknown key", "X-API-Key", mustGenerate(t), "", ErrInvalidCredentials},
		{"unknown operator-style key", "X-API-Key", "not-a-configured-key-at-all", "", ErrInvalidCredentials},
		{"bad checksum", "X-API-Key", badChecksum, "", ErrMalformed},
		{"revoked", "X-API-Key", revoked, "", ErrRevoked},
		{"empty X-API-Key", "X-API-Key", "", "", ErrMalformed},
		{"non-ASCII", "X-API-Key", active + "é", "", ErrMalformed},
		{"64 KiB", "X-API-Key", strings.Repeat("k", 64<<10), "", ErrMalformed},
		{"prefix only", "X-API-Key", APIKeyPrefix, "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := keys.Authenticate(apiKeyRequest(tt.header, tt.value))
			if tt.err != nil {
				if !errors.Is(err, tt.err) || p != nil {
					t.Fatalf("Authenticate = %v, %v; want %v", p, err, tt.err)
				}
				if strings.Contains(err.Error(), active) || strings.Contains(err.Error(), tt.value) && tt.value != "" {
					t.Fatalf("error %q quotes the credential", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if p.Subject != tt.subject || p.Method != MethodAPIKey || p.KeyID == "" {
				t.Fatalf("principal = %+v", p)
			}
		})
	}

	t.Run("repeated X-API-Key", func(t *testing.T) {
		r := apiKeyRequest("X-API-Key", active)
		r.Header.Add("X-API-Key", active)
		if _, err := keys.Authenticate(r); !errors.Is(err, ErrMalformed) {
			t.Fatalf("err = %v, want ErrMalformed", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		keys.now = func() time.Time { return now.Add(time.Hour) }
		defer func() { keys.now = func() time.Time { return now } }()
		if _, err := keys.Authenticate(apiKeyRequest("X-API-Key", expiring)); !errors.Is(err, ErrExpired) {
			t.Fatalf("err = %v, want ErrExpired", err)
		}
	})
	t.Run("nil authenticator fails closed", func(t *testing.T) {
		var nilKeys *APIKeys
		if _, err := nilKeys.Authenticate(apiKeyRequest("X-API-Key", active)); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	})
}

func TestAPIKeysRotation(t *testing.T) {
	old, next := mustGenerate(t), mustGenerate(t)
	keys, err := NewAPIKeys(APIKey{Key: old, Subject: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Add(APIKey{Key: next, Subject: "svc"}); err != nil {
		t.Fatal(err)
	}
	if err := keys.Add(APIKey{Key: next}); err == nil {
		t.Fatal("adding the same key twice: no error")
	}
	for _, k := range []string{old, next} {
		if _, err := keys.Authenticate(apiKeyRequest("X-API-Key", k)); err != nil {
			t.Fatalf("during rotation: %v", err)
		}
	}
	if n := keys.RevokeID(apiKeyID(old)); n != 1 {
		t.Fatalf("RevokeID revoked %d keys, want 1", n)
	}
	if _, err := keys.Authenticate(apiKeyRequest("X-API-Key", old)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("old key after revocation: %v", err)
	}
	if _, err := keys.Authenticate(apiKeyRequest("X-API-Key", next)); err != nil {
		t.Fatalf("new key after revocation: %v", err)
	}
	if keys.Revoke(mustGenerate(t)) {
		t.Fatal("Revoke of an unknown key reported true")
	}
}

// TestRequireResponses checks the status, challenge and body of each refusal,
// and that neither the response nor the audit log ever holds the credential.
func TestRequireResponses(t *testing.T) {
	ForEachBridge(t, func(t *testing.T) {
		key := mustGenerate(t)
		keys, err := NewAPIKeys(APIKey{Key: key, Subject: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		var logBuf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		const prm = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p := PrincipalFromHTTPRequest(r); p == nil || p.Subject != "alice" {
				t.Errorf("handler sees principal %+v", p)
			}
			if got := r.Header.Get("X-API-Key"); got != "" && got != key {
				t.Errorf("handler sees X-API-Key %q", got)
			}
			if got := r.Header.Get("Authorization"); strings.Contains(got, bridgePlaceholder[len("Bearer "):]) {
				t.Error("the bridge placeholder leaked to the handler")
			}
			w.WriteHeader(http.StatusNoContent)
		})
		h := Require(&RequireOptions{ResourceMetadataURL: prm, Logger: logger}, keys)(next)

		wrongKey := mustGenerate(t)
		tests := []struct {
			name      string
			header    string
			value     string
			status    int
			challenge string
			code      string
		}{
			{"ok X-API-Key", "X-API-Key", key, http.StatusNoContent, "", ""},
			{"ok bearer", "Authorization", "Bearer " + key, http.StatusNoContent, "", ""},
			{"ok bearer odd spacing", "Authorization", "bearer  " + key, http.StatusNoContent, "", ""},
			{"missing", "", "", http.StatusUnauthorized, `Bearer resource_metadata="` + prm + `"`, ""},
			{"wrong key", "X-API-Key", wrongKey, http.StatusUnauthorized, `Bearer resource_metadata="` + prm + `", error="invalid_token", error_description="The credentials are not recognised."`, "invalid_token"},
			{"bad checksum", "X-API-Key", corrupt(key), http.StatusUnauthorized, `Bearer resource_metadata="` + prm + `", error="invalid_token", error_description="The credentials are malformed."`, "invalid_token"},
			{"JWT with only API keys configured", "Authorization", "Bearer a.b.c", http.StatusUnauthorized, `Bearer resource_metadata="` + prm + `", error="invalid_token", error_description="The credentials are not recognised."`, "invalid_token"},
			{"basic auth", "Authorization", "Basic YTpi", http.StatusUnauthorized, `Bearer resource_metadata="` + prm + `", error="invalid_token", error_description="The credentials are not recognised."`, "invalid_token"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				logBuf.Reset()
				w := httptest.NewRecorder()
				h.ServeHTTP(w, apiKeyRequest(tt.header, tt.value))
				if w.Code != tt.status {
					t.Fatalf("status = %d, want %d; body %s", w.Code, tt.status, w.Body)
				}
				if got := w.Header().Get("WWW-Authenticate"); got != tt.challenge {
					t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
				}
				if tt.code != "" {
					if ct := w.Header().Get("Content-Type"); ct != "application/json" {
						t.Errorf("Content-Type = %q", ct)
					}
					if !strings.Contains(w.Body.String(), `"error":"`+tt.code+`"`) {
						t.Errorf("body = %s, want error %s", w.Body, tt.code)
					}
				}
				for _, secret := range []string{key, wrongKey} {
					if strings.Contains(w.Body.String(), secret) || strings.Contains(logBuf.String(), secret) {
						t.Fatalf("credential in body %q or log %q", w.Body, logBuf.String())
					}
				}
				// One audit event per decision.
				if n := strings.Count(logBuf.String(), "\n"); n != 1 {
					t.Fatalf("%d audit events, want 1: %s", n, logBuf.String())
				}
				wantOutcome := `"outcome":"success"`
				if tt.status != http.StatusNoContent {
					wantOutcome = `"outcome":"failure"`
				}
				if !strings.Contains(logBuf.String(), wantOutcome) || !strings.Contains(logBuf.String(), `"remote":"192.0.2.1:1234"`) {
					t.Errorf("audit event %s", logBuf.String())
				}
			})
		}

		t.Run("audit event of a wrong key carries its fingerprint", func(t *testing.T) {
			logBuf.Reset()
			h.ServeHTTP(httptest.NewRecorder(), apiKeyRequest("X-API-Key", wrongKey))
			for _, want := range []string{`"method":"apikey"`, `"reason":"invalid"`, `"key_id":"` + apiKeyID(wrongKey) + `"`} {
				if !strings.Contains(logBuf.String(), want) {
					t.Errorf("audit event %s lacks %s", logBuf.String(), want)
				}
			}
		})
		t.Run("no authenticators refuses everything", func(t *testing.T) {
			w := httptest.NewRecorder()
			Require(nil)(next).ServeHTTP(w, apiKeyRequest("X-API-Key", key))
			if w.Code != http.StatusServiceUnavailable {
				t.Fatalf("status = %d, want 503", w.Code)
			}
		})
		t.Run("authenticator error text never reaches the client", func(t *testing.T) {
			leaky := AuthenticatorFunc(func(*http.Request) (*Principal, error) {
				return nil, errors.New("db password=hunter2 rejected")
			})
			w := httptest.NewRecorder()
			Require(&RequireOptions{Logger: logger}, leaky)(next).ServeHTTP(w, apiKeyRequest("X-API-Key", key))
			if w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "hunter2") || strings.Contains(logBuf.String(), "hunter2") {
				t.Fatalf("status %d body %s", w.Code, w.Body)
			}
		})
		t.Run("rate limited", func(t *testing.T) {
			for _, tt := range []struct {
				err   error
				retry string
			}{
				{&RateLimitError{RetryAfter: 1500 * time.Millisecond}, "2"},
				{&RateLimitError{}, "1"},
				{fmt.Errorf("lockout: %w", &RateLimitError{RetryAfter: time.Minute}), "60"},
				{ErrRateLimited, ""},
			} {
				limited := AuthenticatorFunc(func(*http.Request) (*Principal, error) { return nil, tt.err })
				w := httptest.NewRecorder()
				Require(&RequireOptions{Logger: logger}, limited)(next).ServeHTTP(w, apiKeyRequest("", ""))
				if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != tt.retry || w.Header().Get("WWW-Authenticate") != "" {
					t.Errorf("%v: status %d, Retry-After %q, challenge %q", tt.err, w.Code, w.Header().Get("Retry-After"), w.Header().Get("WWW-Authenticate"))
				}
				if !strings.Contains(w.Body.String(), `"error":"temporarily_unavailable"`) {
					t.Errorf("%v: body %s", tt.err, w.Body)
				}
			}
		})
		t.Run("forbidden and insufficient scope", func(t *testing.T) {
			deny := AuthenticatorFunc(func(*http.Request) (*Principal, error) {
				return nil, &ScopeError{Required: []string{"tools:write", "tools:read"}}
			})
			w := httptest.NewRecorder()
			Require(&RequireOptions{Logger: logger}, deny)(next).ServeHTTP(w, apiKeyRequest("", ""))
			want := `Bearer error="insufficient_scope", error_description="The caller is not allowed to do this.", scope="tools:write tools:read"`
			if w.Code != http.StatusForbidden || w.Header().Get("WWW-Authenticate") != want {
				t.Fatalf("status %d, challenge %q", w.Code, w.Header().Get("WWW-Authenticate"))
			}
		})
	})
}

// FuzzAPIKeyAuthenticate sends arbitrary header values through the whole
// API-key path: it must never panic, accept only a configured key, and never
// put the presented value in an error.
func FuzzAPIKeyAuthenticate(f *testing.F) {
	key := "mcpk_0000000000000000000000000000000000000000000" // not generated: no checksum
	good, err := GenerateAPIKey()
	if err != nil {
		f.Fatal(err)
	}
	keys, err := NewAPIKeys(APIKey{Key: good, Subject: "alice"}, APIKey{Key: "operator-key-0123456789"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, corrupt(good), key, "operator-key-0123456789", "", " ", "Bearer " + good, "a.b.c", strings.Repeat("k", 9000), "é"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, xAPIKey, authorization string) {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		if xAPIKey != "" {
			r.Header["X-Api-Key"] = []string{xAPIKey}
		}
		if authorization != "" {
			r.Header["Authorization"] = []string{authorization}
		}
		p, err := keys.Authenticate(r)
		if err == nil {
			if p == nil {
				t.Fatal("nil principal and nil error")
			}
			presented := strings.TrimSpace(xAPIKey)
			if xAPIKey == "" {
				presented = strings.TrimSpace(authorization)
				presented = strings.TrimSpace(presented[min(len(presented), len("bearer")):])
			}
			if presented != good && presented != "operator-key-0123456789" {
				t.Fatalf("accepted %q", presented)
			}
			return
		}
		if len(xAPIKey) > 3 && strings.Contains(err.Error(), xAPIKey) {
			t.Fatalf("error %q holds the presented value", err)
		}
	})
}

func TestAPIKeysRoles(t *testing.T) {
	keys, err := NewAPIKeys(
		APIKey{Key: "0123456789abcdef-a", Roles: []string{"viewer", "editor"}},
		APIKey{Key: "0123456789abcdef-b", Roles: []string{"admin", "viewer"}},
		APIKey{Key: "0123456789abcdef-c"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keys.Roles(), []string{"admin", "editor", "viewer"}; !slices.Equal(got, want) {
		t.Errorf("Roles() = %q, want %q", got, want)
	}
	g, err := NewGuard(&Policy{Roles: map[string][]string{"admin": {"editor"}, "editor": nil}, Rules: []Rule{{Tool: "t", Roles: []string{"editor"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.CheckRoles(keys.Roles()...); err == nil || !strings.Contains(err.Error(), `"viewer"`) {
		t.Errorf("CheckRoles(keys.Roles()...) = %v, want an error naming viewer", err)
	}
}
