package mcpauth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRequireTwoCredentials checks that a request presenting more than one
// header credential is refused with 400 invalid_request, whatever the order
// of the authenticators and whether each credential is valid.
func TestRequireTwoCredentials(t *testing.T) {
	k := testKeys()
	now := time.Now()
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", nil)
	alice, bob := mustGenerate(t), mustGenerate(t)
	keys, err := NewAPIKeys(APIKey{Key: alice, Subject: "alice"}, APIKey{Key: bob, Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	jwtBob := signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, map[string]any{"sub": "bob"})), "HS256", k.secret)
	tests := []struct {
		name   string
		header http.Header
	}{
		{"X-API-Key and a bearer JWT", http.Header{"X-Api-Key": {alice}, "Authorization": {"Bearer " + jwtBob}}},
		{"invalid X-API-Key and a valid bearer JWT", http.Header{"X-Api-Key": {corrupt(alice)}, "Authorization": {"Bearer " + jwtBob}}},
		{"X-API-Key and a bearer API key of another subject", http.Header{"X-Api-Key": {alice}, "Authorization": {"Bearer " + bob}}},
		{"X-API-Key and Basic", http.Header{"X-Api-Key": {alice}, "Authorization": {"Basic YTpi"}}},
		{"X-API-Key twice", http.Header{"X-Api-Key": {alice, bob}}},
		{"Authorization twice", http.Header{"Authorization": {"Bearer " + alice, "Bearer " + jwtBob}}},
	}
	for _, order := range [][]Authenticator{{keys, v}, {v, keys}} {
		h := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, order...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("handler reached as %s", PrincipalFromHTTPRequest(r).Subject)
		}))
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
				r.Header = tt.header.Clone()
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusBadRequest {
					t.Fatalf("%T first: status %d, want 400", order[0], w.Code)
				}
				if got, want := w.Header().Get("WWW-Authenticate"), `Bearer error="invalid_request", error_description="The request presents more than one credential."`; got != want {
					t.Errorf("WWW-Authenticate = %q, want %q", got, want)
				}
				var body struct{ Error string }
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error != "invalid_request" {
					t.Errorf("body %s, want error invalid_request", w.Body)
				}
				for _, secret := range []string{alice, bob, jwtBob} {
					if strings.Contains(w.Body.String(), secret) {
						t.Fatal("a credential is in the body")
					}
				}
			})
		}
	}
}

// TestRequireChallengeBodies checks that the body and the challenge agree:
// no error code for a request without credentials (RFC 6750 §3.1), and the
// reason class in error_description otherwise.
func TestRequireChallengeBodies(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	good, expired, revoked := mustGenerate(t), mustGenerate(t), mustGenerate(t)
	keys, err := NewAPIKeys(APIKey{Key: good}, APIKey{Key: expired, ExpiresAt: now.Add(-time.Second)}, APIKey{Key: revoked})
	if err != nil {
		t.Fatal(err)
	}
	keys.now = func() time.Time { return now }
	keys.Revoke(revoked)
	h := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, keys)(http.NotFoundHandler())
	tests := []struct {
		name, value string
		code, desc  string
	}{
		{"missing", "", "", "Authentication is required."},
		{"malformed", corrupt(good), "invalid_token", "The credentials are malformed."},
		{"unknown", mustGenerate(t), "invalid_token", "The credentials are not recognised."},
		{"expired", expired, "invalid_token", "The credentials have expired."},
		{"revoked", revoked, "invalid_token", "The credentials have been revoked."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			if tt.value != "" {
				r.Header.Set("X-API-Key", tt.value)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("status %d", w.Code)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			challenge := w.Header().Get("WWW-Authenticate")
			if code, ok := body["error"]; code != tt.code || ok != (tt.code != "") {
				t.Errorf("body error = %q (present %v), want %q", code, ok, tt.code)
			}
			if body["error_description"] != tt.desc {
				t.Errorf("body error_description = %q, want %q", body["error_description"], tt.desc)
			}
			if tt.code == "" {
				if challenge != "Bearer" {
					t.Errorf("WWW-Authenticate = %q, want a bare Bearer", challenge)
				}
			} else if want := `Bearer error="` + tt.code + `", error_description="` + tt.desc + `"`; challenge != want {
				t.Errorf("WWW-Authenticate = %q, want %q", challenge, want)
			}
		})
	}
}

// recordingSink keeps the events it receives.
type recordingSink struct {
	mu     sync.Mutex
	events []Event
}

func (s *recordingSink) Record(_ context.Context, e Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *recordingSink) take() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.events
	s.events = nil
	return out
}

// TestRequireRepeatSuccesses checks that a credential's successes are
// reported in full once per interval and as repeats (Debug) in between,
// per credential, and that failures always are in full.
func TestRequireRepeatSuccesses(t *testing.T) {
	// Each subtest has keys of its own: a principal's last full report is
	// kept with the principal.
	newKeys := func(t *testing.T) (a, b string, keys *APIKeys) {
		a, b = mustGenerate(t), mustGenerate(t)
		keys, err := NewAPIKeys(APIKey{Key: a, Subject: "a"}, APIKey{Key: b, Subject: "b"})
		if err != nil {
			t.Fatal(err)
		}
		return a, b, keys
	}
	serve := func(h http.Handler, key string) {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header.Set("X-API-Key", key)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	repeats := func(events []Event) (full, repeat int) {
		for _, e := range events {
			if e.Kind == EventAuthentication && e.Outcome == OutcomeSuccess {
				if e.Repeat {
					repeat++
				} else {
					full++
				}
			}
		}
		return full, repeat
	}
	t.Run("default interval", func(t *testing.T) {
		a, b, keys := newKeys(t)
		sink := &recordingSink{}
		h := Require(&RequireOptions{Events: sink}, keys)(http.NotFoundHandler())
		for range 5 {
			serve(h, a)
		}
		serve(h, b)
		if full, repeat := repeats(sink.take()); full != 2 || repeat != 4 {
			t.Errorf("full %d, repeats %d; want 2 and 4", full, repeat)
		}
		serve(h, corrupt(a))
		serve(h, corrupt(a))
		for _, e := range sink.take() {
			if e.Kind == EventAuthentication && (e.Outcome != OutcomeFailure || e.Repeat) {
				t.Errorf("failure event %+v", e)
			}
		}
	})
	t.Run("negative interval reports every success", func(t *testing.T) {
		a, _, keys := newKeys(t)
		sink := &recordingSink{}
		h := Require(&RequireOptions{Events: sink, SuccessEventInterval: -1}, keys)(http.NotFoundHandler())
		for range 3 {
			serve(h, a)
		}
		if full, repeat := repeats(sink.take()); full != 3 || repeat != 0 {
			t.Errorf("full %d, repeats %d; want 3 and 0", full, repeat)
		}
	})
	t.Run("log sink writes repeats at Debug", func(t *testing.T) {
		a, _, keys := newKeys(t)
		var buf bytes.Buffer
		h := Require(&RequireOptions{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}, keys)(http.NotFoundHandler())
		for range 3 {
			serve(h, a)
		}
		// One line for the configuration Require loaded, one for the
		// first success.
		if n := strings.Count(buf.String(), "\n"); n != 2 {
			t.Errorf("%d lines at Info, want 2: %s", n, buf.String())
		}
	})
	t.Run("interval passes", func(t *testing.T) {
		l := newSuccessLog(time.Minute)
		p := &Principal{Method: MethodAPIKey, Subject: "a", KeyID: "k"}
		t0 := time.Unix(1000, 0)
		for _, tc := range []struct {
			at   time.Duration
			want bool
		}{{0, false}, {time.Second, true}, {59 * time.Second, true}, {60 * time.Second, false}, {61 * time.Second, true}} {
			if got := l.seen(p, t0.Add(tc.at)); got != tc.want {
				t.Errorf("seen at +%v = %v, want %v", tc.at, got, tc.want)
			}
		}
	})
}

// TestEventValuesBounded checks that caller-chosen values reach a sink cut
// to maxEventValueLen, marked, and with control and invalid bytes replaced.
func TestEventValuesBounded(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(t *testing.T, out string)
	}{
		{"short clean value untouched", "read-data", func(t *testing.T, out string) {
			if out != "read-data" {
				t.Errorf("%q", out)
			}
		}},
		{"1 MiB cut", strings.Repeat("a", 1<<20), func(t *testing.T, out string) {
			if len(out) > maxEventValueLen || !strings.HasSuffix(out, cutMark) {
				t.Errorf("len %d, suffix %q", len(out), out[max(0, len(out)-10):])
			}
		}},
		{"exactly the bound untouched", strings.Repeat("b", maxEventValueLen), func(t *testing.T, out string) {
			if out != strings.Repeat("b", maxEventValueLen) {
				t.Errorf("changed: %q", out)
			}
		}},
		{"control characters replaced", "tool\n level=ERROR msg=forged\x1b[31m", func(t *testing.T, out string) {
			if strings.ContainsAny(out, "\n\x1b") {
				t.Errorf("%q", out)
			}
		}},
		{"invalid UTF-8 replaced", "a\xff\xfeb", func(t *testing.T, out string) {
			if out != "a\uFFFD\uFFFDb" {
				t.Errorf("%q", out)
			}
		}},
		{"multi-byte text cut on a character boundary", strings.Repeat("é", 300), func(t *testing.T, out string) {
			if len(out) > maxEventValueLen || !strings.HasSuffix(out, cutMark) || !strings.HasPrefix(out, "éé") {
				t.Errorf("len %d %q", len(out), out)
			}
			if s := strings.TrimSuffix(out, cutMark); strings.Trim(s, "é") != "" {
				t.Errorf("broken character in %q", s)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &recordingSink{}
			emit(context.Background(), sink, Event{Kind: EventAuthorization, Outcome: OutcomeDenied,
				Target: tt.in, Subject: tt.in, KeyID: tt.in, RequestID: tt.in, RPCMethod: tt.in, ClientID: tt.in, Detail: tt.in})
			e := sink.take()[0]
			for _, out := range []string{e.Target, e.Subject, e.KeyID, e.RequestID, e.RPCMethod, e.ClientID, e.Detail} {
				tt.check(t, out)
			}
		})
	}
	t.Run("through Require", func(t *testing.T) {
		keys, err := NewAPIKeys(APIKey{Key: mustGenerate(t)})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		h := Require(&RequireOptions{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}, keys)(http.NotFoundHandler())
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header.Set("X-Request-Id", strings.Repeat("r", 64<<10))
		h.ServeHTTP(httptest.NewRecorder(), r)
		if buf.Len() > 2<<10 {
			t.Errorf("audit line of %d bytes", buf.Len())
		}
	})
}

// TestRequireReportsConfiguration: Require reports once what it runs with,
// as a configuration event that names no credential.
func TestRequireReportsConfiguration(t *testing.T) {
	key := mustGenerate(t)
	keys, err := NewAPIKeys(APIKey{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	off, err := NewLockout(&LockoutOptions{SourceFailures: -1, CredentialFailures: -1})
	if err != nil {
		t.Fatal(err)
	}
	custom := AuthenticatorFunc(func(*http.Request) (*Principal, error) { return nil, ErrNoCredentials })
	for _, tc := range []struct {
		opts *RequireOptions
		auth []Authenticator
		want string
	}{
		{&RequireOptions{}, []Authenticator{keys, custom}, "loaded: authenticators apikey, custom; lockout on"},
		{&RequireOptions{Lockout: off}, []Authenticator{keys}, "loaded: authenticators apikey; lockout off"},
		{&RequireOptions{RateLimit: Limit{Rate: 10, Burst: 10}}, nil, "loaded: authenticators none (every request is refused); lockout on; rate limits on"},
	} {
		sink := &recordingSink{}
		tc.opts.Events = sink
		Require(tc.opts, tc.auth...)
		events := sink.take()
		if len(events) != 1 || events[0].Kind != EventConfiguration || events[0].Outcome != OutcomeSuccess || events[0].Detail != tc.want {
			t.Errorf("events %+v, want one configuration event %q", events, tc.want)
		}
		if strings.Contains(fmt.Sprint(events), key) {
			t.Error("the event holds the key")
		}
	}
}
