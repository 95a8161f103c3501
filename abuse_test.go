package mcpauth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// abuseServer is Require with an API key and the given options, and a
// handler that answers 200.
func abuseServer(t *testing.T, opts *RequireOptions, keys ...APIKey) http.Handler {
	t.Helper()
	k, err := NewAPIKeys(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return Require(opts, k)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
}

func do(h http.Handler, remote, key string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.RemoteAddr = remote
	if key != "" {
		r.Header.Set("X-API-Key", key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestRequireLockout checks that guessing from one address locks it out,
// a correct key from it included, while other addresses go on; that
// expired and revoked keys do not count; and that the lockout is reported
// once, its refused attempts as repeats.
func TestRequireLockout(t *testing.T) {
	clock := newTestClock()
	events := &eventLog{}
	lo, err := newLockout(&LockoutOptions{SourceFailures: 3, Events: events}, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	good, expired := mustGenerate(t), mustGenerate(t)
	h := abuseServer(t, &RequireOptions{Lockout: lo, Events: events},
		APIKey{Key: good, Subject: "alice"}, APIKey{Key: expired, ExpiresAt: clock.now().Add(-time.Hour)})
	const guesser, other = "192.0.2.66:5000", "198.51.100.2:5000"
	for range 10 {
		if w := do(h, guesser, expired); w.Code != http.StatusUnauthorized {
			t.Fatalf("expired key: %d, want 401", w.Code)
		}
	}
	if w := do(h, guesser, good); w.Code != http.StatusOK {
		t.Fatalf("expired keys locked the address out: %d", w.Code)
	}
	for i := range 3 {
		if w := do(h, guesser, corrupt(good)); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, w.Code)
		}
	}
	for _, key := range []string{good, "", mustGenerate(t)} {
		w := do(h, guesser, key)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "60" {
			t.Fatalf("locked-out address, key %v: %d Retry-After %q, want 429 and 60", key != "", w.Code, w.Header().Get("Retry-After"))
		}
		if !strings.Contains(w.Body.String(), "temporarily_unavailable") || strings.Contains(w.Body.String(), good) {
			t.Fatalf("body %s", w.Body)
		}
	}
	if w := do(h, other, good); w.Code != http.StatusOK {
		t.Fatalf("another address: %d, want 200", w.Code)
	}
	if n := events.count(EventLockout, OutcomeDenied); n != 1 {
		t.Fatalf("%d lockout events, want 1", n)
	}
	repeats := 0
	for _, e := range events.events {
		if e.Reason == "locked_out" && e.Kind == EventAuthentication {
			if !e.Repeat {
				t.Fatalf("a refused attempt reported in full: %+v", e)
			}
			repeats++
		}
	}
	if repeats != 3 {
		t.Fatalf("%d refused attempts reported, want 3", repeats)
	}
	clock.advance(time.Minute)
	if w := do(h, guesser, good); w.Code != http.StatusOK {
		t.Fatalf("after the lockout: %d, want 200", w.Code)
	}
	if n := events.count(EventLockout, OutcomeSuccess); n != 1 {
		t.Fatalf("%d lockout ended events, want 1", n)
	}
}

// TestRequireLockoutDefault checks that Require locks out with the
// documented default thresholds when no Lockout is configured.
func TestRequireLockoutDefault(t *testing.T) {
	key := mustGenerate(t)
	h := abuseServer(t, nil, APIKey{Key: key})
	for i := range defaultSourceFailures {
		if w := do(h, "192.0.2.1:1", "wrong-key-"+strconv.Itoa(i)+"-padding"); w.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, w.Code)
		}
	}
	if w := do(h, "192.0.2.1:1", key); w.Code != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %d, want 429", defaultSourceFailures, w.Code)
	}
	off, err := NewLockout(&LockoutOptions{SourceFailures: -1, CredentialFailures: -1})
	if err != nil {
		t.Fatal(err)
	}
	h = abuseServer(t, &RequireOptions{Lockout: off}, APIKey{Key: key})
	for range 3 * defaultSourceFailures {
		do(h, "192.0.2.1:1", corrupt(key))
	}
	if w := do(h, "192.0.2.1:1", key); w.Code != http.StatusOK {
		t.Fatalf("lockout turned off: %d, want 200", w.Code)
	}
}

// TestRequireLockoutBehindProxy checks that the forwarded address counts
// only from a trusted proxy.
func TestRequireLockoutBehindProxy(t *testing.T) {
	key := mustGenerate(t)
	lo, err := NewLockout(&LockoutOptions{SourceFailures: 2, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	h := abuseServer(t, &RequireOptions{Lockout: lo}, APIKey{Key: key})
	for range 2 {
		do(h, "10.0.0.1:1", corrupt(key), "X-Forwarded-For", "203.0.113.1")
	}
	if w := do(h, "10.0.0.1:1", key, "X-Forwarded-For", "203.0.113.1"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("forwarded guesser: %d, want 429", w.Code)
	}
	if w := do(h, "10.0.0.1:1", key, "X-Forwarded-For", "203.0.113.2"); w.Code != http.StatusOK {
		t.Fatalf("another client of the proxy: %d, want 200", w.Code)
	}
	// Not from a proxy: the header is the attacker's, and ignored.
	for i := range 2 {
		do(h, "192.0.2.9:1", corrupt(key), "X-Forwarded-For", "203.0.113."+strconv.Itoa(10+i))
	}
	if w := do(h, "192.0.2.9:1", key, "X-Forwarded-For", "203.0.113.50"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("spoofed X-Forwarded-For escaped the lockout: %d", w.Code)
	}
}

// TestRequireRateLimit runs many goroutines of one principal, and of
// unauthenticated callers from one address, against their limits: exactly
// the burst gets through, the rest are refused with 429 and the RateLimit
// headers.
func TestRequireRateLimit(t *testing.T) {
	key := mustGenerate(t)
	const burst = 7
	off, _ := NewLockout(&LockoutOptions{SourceFailures: -1, CredentialFailures: -1})
	h := abuseServer(t, &RequireOptions{
		Lockout:         off,
		RateLimit:       Limit{Rate: 0.001, Burst: burst},
		SourceRateLimit: Limit{Rate: 0.001, Burst: burst},
	}, APIKey{Key: key, Subject: "alice"})
	tests := []struct {
		name, key, remote string
		pass              int
		policy            string
	}{
		{"principal", key, "", http.StatusOK, `"principal";q=7;w=7000`},
		{"source", "", "192.0.2.77:1", http.StatusUnauthorized, `"source";q=7;w=7000`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var passed, limited atomic.Int64
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Go(func() {
					for range 20 {
						remote := tt.remote
						if remote == "" {
							remote = "198.51.100." + strconv.Itoa(g) + ":1" // many addresses, one principal
						}
						w := do(h, remote, tt.key)
						switch w.Code {
						case tt.pass:
							passed.Add(1)
						case http.StatusTooManyRequests:
							limited.Add(1)
							if w.Header().Get("Retry-After") == "" || !strings.HasPrefix(w.Header().Get("RateLimit"), `"`+tt.name+`";r=0;t=`) {
								t.Errorf("headers %v", w.Header())
							}
						default:
							t.Errorf("status %d", w.Code)
						}
						if got := w.Header().Get("RateLimit-Policy"); got != tt.policy {
							t.Errorf("RateLimit-Policy %q, want %q", got, tt.policy)
						}
					}
				})
			}
			wg.Wait()
			if passed.Load() != burst || limited.Load() != 32*20-burst {
				t.Fatalf("%d passed and %d limited, want %d and %d", passed.Load(), limited.Load(), burst, 32*20-burst)
			}
		})
	}
	if w := do(h, "192.0.2.78:1", ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("another address: %d, want 401", w.Code)
	}
}

// TestRequireRateLimitValues: the RateLimit field counts down with the
// bucket, for a principal and for an address in turn, each under its own
// name, though both limits show the same numbers at each step (recent
// values are shared between responses: see rateLimits.value).
func TestRequireRateLimitValues(t *testing.T) {
	key := mustGenerate(t)
	off, _ := NewLockout(&LockoutOptions{SourceFailures: -1, CredentialFailures: -1})
	limit := Limit{Rate: 0.001, Burst: 5}
	h := abuseServer(t, &RequireOptions{Lockout: off, RateLimit: limit, SourceRateLimit: limit}, APIKey{Key: key, Subject: "alice"})
	for i := range 7 {
		left := max(4-i, 0)
		// t: the seconds until the bucket is whole, 1,000 per token used.
		want := func(name string) string {
			return `"` + name + `";r=` + strconv.Itoa(left) + ";t=" + strconv.Itoa(1000*(5-left))
		}
		if i >= 5 {
			// Refused: nothing taken, the bucket stays empty.
			want = func(name string) string { return `"` + name + `";r=0;t=5000` }
		}
		for _, c := range []struct{ name, key, remote string }{
			{"principal", key, "198.51.100.1:1"},
			{"source", "", "192.0.2.7:1"},
		} {
			w := do(h, c.remote, c.key)
			// (Exact while the test takes under a second: the bucket
			// refills a thousandth of a token per second.)
			if got := w.Header().Get("RateLimit"); got != want(c.name) {
				t.Errorf("request %d (%s): RateLimit %q, want %q", i+1, c.name, got, want(c.name))
			}
		}
	}
}

func TestRequireRateLimitBadConfig(t *testing.T) {
	key := mustGenerate(t)
	events := &eventLog{}
	h := abuseServer(t, &RequireOptions{Events: events, RateLimit: Limit{Burst: 3}}, APIKey{Key: key})
	if w := do(h, "192.0.2.1:1", key); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("rate limit without a rate: %d, want 503", w.Code)
	}
	if n := events.count(EventConfiguration, OutcomeFailure); n != 1 {
		t.Fatalf("%d configuration events, want 1", n)
	}
}

func TestWarnPlainHTTP(t *testing.T) {
	tests := []struct {
		url  string
		warn bool
	}{
		{"http://mcp.example.com/.well-known/oauth-protected-resource", true},
		{"https://mcp.example.com/.well-known/oauth-protected-resource", false},
		{"http://127.0.0.1:8080/x", false},
		{"http://localhost/x", false},
		{"http://[::1]/x", false},
		{"", false},
	}
	for _, tt := range tests {
		events := &eventLog{}
		abuseServer(t, &RequireOptions{Events: events, ResourceMetadataURL: tt.url}, APIKey{Key: mustGenerate(t)})
		if got := events.count(EventConfiguration, OutcomeFailure) == 1; got != tt.warn {
			t.Errorf("%q: warned %v, want %v", tt.url, got, tt.warn)
		}
	}
}

// TestRequireLoadGuessingAndValid is a bounded loopback load test: valid
// callers (behind a trusted proxy, each with its own forwarded address)
// and one guessing client run at once over real connections. Every valid
// call is served; the guesser gets exactly the default threshold of 401s,
// then only 429s, its correct key included.
func TestRequireLoadGuessingAndValid(t *testing.T) {
	key := mustGenerate(t)
	lo, err := NewLockout(&LockoutOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(abuseServer(t, &RequireOptions{Lockout: lo}, APIKey{Key: key, Subject: "svc"}))
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.Timeout = 30 * time.Second
	send := func(forwarded, key string) int {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/mcp", nil)
		if err != nil {
			t.Error(err)
			return 0
		}
		req.Header.Set("X-Forwarded-For", forwarded)
		req.Header.Set("X-API-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const callers, calls, guesses = 8, 100, 300
	var served, refused atomic.Int64
	var codes sync.Map // status -> *atomic.Int64, for the guesser
	count := func(code int) {
		c, _ := codes.LoadOrStore(code, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
	}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for range calls {
				if send("198.51.100."+strconv.Itoa(c+1), key) == http.StatusOK {
					served.Add(1)
				} else {
					refused.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range guesses {
			count(send("203.0.113.66", "guess-"+strconv.Itoa(i)+"-0123456789"))
		}
		count(send("203.0.113.66", key))
	})
	wg.Wait()
	if served.Load() != callers*calls || refused.Load() != 0 {
		t.Fatalf("valid callers: %d served, %d refused; want all %d served", served.Load(), refused.Load(), callers*calls)
	}
	get := func(code int) int64 {
		if c, ok := codes.Load(code); ok {
			return c.(*atomic.Int64).Load()
		}
		return 0
	}
	if get(http.StatusUnauthorized) != defaultSourceFailures || get(http.StatusTooManyRequests) != guesses-defaultSourceFailures+1 {
		t.Fatalf("guesser: %d 401s and %d 429s, want %d and %d", get(401), get(429), defaultSourceFailures, guesses-defaultSourceFailures+1)
	}
}

// downLimiter cannot answer.
type downLimiter struct{}

func (downLimiter) Allow(context.Context, string, Limit) (RateDecision, error) {
	return RateDecision{}, errors.New("limiter down")
}

// TestRequireRateLimiterDown: a rate limiter that cannot answer refuses
// the request with 503, never lets it through.
func TestRequireRateLimiterDown(t *testing.T) {
	key := mustGenerate(t)
	h := abuseServer(t, &RequireOptions{RateLimit: Limit{Rate: 1, Burst: 1}, RateLimiter: downLimiter{}}, APIKey{Key: key})
	if w := do(h, "192.0.2.1:1", key); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "temporarily_unavailable") {
		t.Fatalf("limiter down: %d %s, want 503", w.Code, w.Body)
	}
}

// TestRequireLockoutTokensByAddress: forged tokens that name a victim's
// kid or jti count against their address only, so they cannot lock the
// victim's valid token out at that address before the address itself is
// locked out.
func TestRequireLockoutTokensByAddress(t *testing.T) {
	k := testKeys()
	now := time.Now()
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", nil)
	h := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, v)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	good := signToken(t, `{"alg":"HS256","kid":"k1"}`, mustJSON(t, goodClaims(issHMAC, now, nil)), "HS256", k.secret)
	forged := signToken(t, `{"alg":"HS256","kid":"k1"}`, mustJSON(t, goodClaims(issHMAC, now, nil)), "HS256", []byte("not the issuer's secret, not at all"))
	send := func(token string) int {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.RemoteAddr = "192.0.2.10:1"
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for i := range defaultSourceFailures - 1 {
		if c := send(forged); c != http.StatusUnauthorized {
			t.Fatalf("forged %d: %d", i, c)
		}
	}
	if c := send(good); c != http.StatusOK {
		t.Fatalf("valid token after %d forgeries of its kid and jti: %d, want 200", defaultSourceFailures-1, c)
	}
	send(forged)
	if c := send(good); c != http.StatusTooManyRequests {
		t.Fatalf("after %d failures the address is locked out: %d, want 429", defaultSourceFailures, c)
	}
}
