package mcpauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestJWTBrokenKeys checks that a key that cannot work (a typed nil, a
// point that is missing or off its curve) is a configuration error from the
// constructor, not a panic at start-up or, worse, on each request.
func TestJWTBrokenKeys(t *testing.T) {
	p256 := elliptic.P256()
	offCurve := &ecdsa.PublicKey{Curve: p256, X: big.NewInt(1), Y: big.NewInt(2)}
	verifierKeys := []struct {
		name string
		key  crypto.PublicKey
	}{
		{"nil interface", nil},
		{"nil *rsa.PublicKey", (*rsa.PublicKey)(nil)},
		{"empty *rsa.PublicKey", &rsa.PublicKey{}},
		{"nil *ecdsa.PublicKey", (*ecdsa.PublicKey)(nil)},
		{"*ecdsa.PublicKey without a point", &ecdsa.PublicKey{Curve: p256}},
		{"*ecdsa.PublicKey off its curve", offCurve},
		{"*ecdsa.PublicKey without a curve", &ecdsa.PublicKey{X: big.NewInt(1), Y: big.NewInt(2)}},
		{"nil ed25519.PublicKey", ed25519.PublicKey(nil)},
	}
	for _, tt := range verifierKeys {
		t.Run("verifier/"+tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("NewJWTVerifier panicked: %v", r)
				}
			}()
			v, err := NewJWTVerifier(JWTVerifierOptions{Issuers: []TrustedIssuer{{Issuer: "i", Audiences: []string{testAudience}, PublicKeys: []crypto.PublicKey{tt.key}}}})
			if err == nil {
				v.Close()
				t.Fatal("NewJWTVerifier accepted the key")
			}
		})
	}
	issuerKeys := []struct {
		name string
		key  any
	}{
		{"nil", nil},
		{"nil *ecdsa.PrivateKey", (*ecdsa.PrivateKey)(nil)},
		{"*ecdsa.PrivateKey without D or point", &ecdsa.PrivateKey{PublicKey: ecdsa.PublicKey{Curve: p256}}},
		{"*ecdsa.PrivateKey off its curve", &ecdsa.PrivateKey{PublicKey: *offCurve, D: big.NewInt(3)}},
		{"nil ed25519.PrivateKey", ed25519.PrivateKey(nil)},
		{"nil secret", []byte(nil)},
	}
	for _, tt := range issuerKeys {
		t.Run("issuer/"+tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("NewJWTIssuer panicked: %v", r)
				}
			}()
			if _, err := NewJWTIssuer(JWTIssuerOptions{Issuer: "i", Key: tt.key}); err == nil {
				t.Fatal("NewJWTIssuer accepted the key")
			}
		})
	}
}

// TestJWKSURLNotLogged checks that a failed JWKS fetch is logged
// without the secrets a JWKS URL can carry (a password, an API key in the
// query), but with enough of the URL to find the endpoint.
func TestJWKSURLNotLogged(t *testing.T) {
	var log bytes.Buffer
	v, err := NewJWTVerifier(JWTVerifierOptions{
		Issuers: []TrustedIssuer{{Issuer: "i", Audiences: []string{testAudience}, JWKSURL: "http://user:s3cret-pw@127.0.0.1:1/jwks?api_key=s3cret-key#s3cret-frag"}},
		Logger:  slog.New(slog.NewTextHandler(&log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if !strings.Contains(log.String(), "JWKS fetch failed") || !strings.Contains(log.String(), "127.0.0.1:1/jwks") {
		t.Fatalf("the failed fetch was not logged with its endpoint: %q", log.String())
	}
	if strings.Contains(log.String(), "s3cret") {
		t.Errorf("the log holds a secret of the JWKS URL: %q", log.String())
	}
}

// TestJWKSKeys serves a JWKS holding keys that must never verify a
// token (an encryption key by use or by key_ops, an HMAC key, a short RSA
// key, a key whose alg or curve differs from the token's) next to good ones,
// and checks each token against it, with and without a kid.
func TestJWKSKeys(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	enc := base64.RawURLEncoding.EncodeToString
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384b, _ := p384.PublicKey.Bytes()
	p256b, _ := k.ec.PublicKey.Bytes()
	rsaJWK := func(kid, extra string, key *rsa.PublicKey) string {
		return `{"kty":"RSA","kid":"` + kid + `","n":"` + enc(key.N.Bytes()) + `","e":"AQAB"` + extra + `}`
	}
	set := `{"keys":[` + strings.Join([]string{
		rsaJWK("use-enc", `,"use":"enc"`, &k.rsa.PublicKey),
		rsaJWK("ops-enc", `,"key_ops":["encrypt","wrapKey"]`, &k.rsa.PublicKey),
		rsaJWK("ops-verify", `,"key_ops":["verify"]`, &k.rsa.PublicKey),
		rsaJWK("small", ``, &small.PublicKey),
		rsaJWK("ps256", `,"alg":"PS256"`, &k.rsa.PublicKey),
		`{"kty":"oct","kid":"oct","k":"` + enc(k.secret) + `"}`,
		`{"kty":"EC","kid":"p384","crv":"P-384","x":"` + enc(p384b[1:49]) + `","y":"` + enc(p384b[49:]) + `"}`,
		`{"kty":"EC","kid":"p256","crv":"P-256","x":"` + enc(p256b[1:33]) + `","y":"` + enc(p256b[33:]) + `"}`,
	}, ",") + `]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(set)) }))
	defer srv.Close()
	v := testVerifier(t, now, srv.URL, func(o *JWTVerifierOptions) { o.JWKSRefetchInterval = time.Hour })
	claims := mustJSON(t, goodClaims(issJWKS, now, nil))
	tests := []struct {
		name     string
		hdr, alg string
		key      any
		class    error // nil: accepted
	}{
		{"use enc", `{"alg":"RS256","kid":"use-enc"}`, "RS256", k.rsa, errTokenUnknownKey},
		{"key_ops without verify", `{"alg":"RS256","kid":"ops-enc"}`, "RS256", k.rsa, errTokenUnknownKey},
		{"key_ops with verify", `{"alg":"RS256","kid":"ops-verify"}`, "RS256", k.rsa, nil},
		{"1024-bit RSA", `{"alg":"RS256","kid":"small"}`, "RS256", small, errTokenAlgorithm},
		{"1024-bit RSA, no kid", `{"alg":"RS256"}`, "RS256", small, errTokenSignature},
		{"RS256 with a PS256 key", `{"alg":"RS256","kid":"ps256"}`, "RS256", k.rsa, errTokenAlgorithm},
		{"PS256 with a PS256 key", `{"alg":"PS256","kid":"ps256"}`, "PS256", k.rsa, nil},
		{"HS256 with an oct key", `{"alg":"HS256","kid":"oct"}`, "HS256", k.secret, errTokenAlgorithm},
		{"HS256 with an RSA kid", `{"alg":"HS256","kid":"ops-verify"}`, "HS256", k.secret, errTokenAlgorithm},
		{"ES256 with a P-384 key", `{"alg":"ES256","kid":"p384"}`, "ES256", k.ec, errTokenAlgorithm},
		{"ES384 with a P-256 key", `{"alg":"ES384","kid":"p256"}`, "ES384", p384, errTokenAlgorithm},
		{"ES384 with its P-384 key", `{"alg":"ES384","kid":"p384"}`, "ES384", p384, nil},
		{"ES256, no kid", `{"alg":"ES256"}`, "ES256", k.ec, nil},
		{"alg none with a kid", `{"alg":"none","kid":"p256"}`, "", nil, errTokenAlgorithm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var token string
			if tt.key == nil {
				token = enc([]byte(tt.hdr)) + "." + enc([]byte(claims)) + "."
			} else {
				token = signToken(t, tt.hdr, claims, tt.alg, tt.key)
			}
			checkVerify(t, v, token, tt.class)
		})
	}
}

// TestJWKSOutage checks, through Require, that once a JWKS that
// served keys goes down, a token whose kid the fetched set lacks gets 503
// (never a pass, never a 401 that tells the client its token is bad), that
// a known kid keeps working, and that neither the response nor the audit
// log holds the token or the fetch's error text.
func TestJWKSOutage(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	srv := newJWKSServer(t, map[string]any{"ec-1": &k.ec.PublicKey})
	var verifierLog, audit bytes.Buffer
	v := testVerifier(t, now, srv.URL, func(o *JWTVerifierOptions) {
		o.Logger = slog.New(slog.NewTextHandler(&verifierLog, nil))
		o.JWKSRefetchInterval = time.Millisecond
	})
	h := Require(&RequireOptions{Logger: slog.New(slog.NewTextHandler(&audit, nil))}, v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, PrincipalFromHTTPRequest(r).KeyID)
	}))
	claims := mustJSON(t, goodClaims(issJWKS, now, nil))
	srv.setDown(true)
	time.Sleep(2 * time.Millisecond) // past the refetch interval
	rotated := signToken(t, `{"alg":"ES256","kid":"ec-2"}`, claims, "ES256", k.ec)
	w := serveBearer(h, rotated)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("unknown kid while the JWKS is down: %d, want 503", w.Code)
	}
	if srv.fetches.Load() < 2 {
		t.Error("the unknown kid caused no fetch, so this test shows nothing")
	}
	sig := rotated[strings.LastIndexByte(rotated, '.')+1:]
	for name, s := range map[string]string{"response": w.Body.String() + fmt.Sprint(w.Header()), "audit log": audit.String(), "verifier log": verifierLog.String()} {
		if strings.Contains(s, sig) || strings.Contains(s, "status code") || strings.Contains(s, "down\n") || strings.Contains(s, "failed to") {
			t.Errorf("the %s holds the token or the fetch's error text: %q", name, s)
		}
	}
	if !strings.Contains(audit.String(), "reason=jwks_unavailable") {
		t.Errorf("audit = %q, want reason=jwks_unavailable", audit.String())
	}
	if w := serveBearer(h, signToken(t, `{"alg":"ES256","kid":"ec-1"}`, claims, "ES256", k.ec)); w.Code != http.StatusOK || w.Body.String() != "ec-1" {
		t.Errorf("known kid while the JWKS is down: %d %q", w.Code, w.Body.String())
	}
}

// newRedirector serves a JWKS at /jwks, redirects /hop/N to /hop/N-1 and
// /hop/1 to /jwks (N redirects in all), and /to to the URL in its u
// parameter. It counts the fetches of /jwks.
func newRedirector(t *testing.T, tls bool, body []byte) (*httptest.Server, *atomic.Int32) {
	var fetches atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/jwks":
			fetches.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		case r.URL.Path == "/to":
			http.Redirect(w, r, r.URL.Query().Get("u"), http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/hop/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
			next := "/jwks"
			if n > 1 {
				next = "/hop/" + strconv.Itoa(n-1)
			}
			http.Redirect(w, r, next+"?k=s3cret-hop", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, &fetches
}

// TestJWKSRedirects configures JWKS URLs that redirect, and checks that the
// verifier follows a redirect only to a URL it would accept as JWKSURL, and
// never from https down to http, even on loopback; at most 3 of them; that
// a caller's CheckRedirect still has its say, and the caller's client is not
// changed; and that the log shows no URL's query.
func TestJWKSRedirects(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	js := &jwksServer{}
	js.set(t, map[string]any{"ec-1": &k.ec.PublicKey})
	tlsA, fetchTLSA := newRedirector(t, true, js.body)
	tlsB, fetchTLSB := newRedirector(t, true, js.body)
	plainA, _ := newRedirector(t, false, js.body)
	plainB, fetchPlainB := newRedirector(t, false, js.body)
	to := func(from *httptest.Server, target string) string {
		return from.URL + "/to?k=s3cret-config&u=" + url.QueryEscape(target+"?k=s3cret-target")
	}
	token := signToken(t, `{"alg":"ES256","kid":"ec-1"}`, mustJSON(t, goodClaims(issJWKS, now, nil)), "ES256", k.ec)
	errRefused := errors.New("refused by the caller")
	tests := []struct {
		name      string
		jwksURL   string
		allowHTTP bool
		// userCheck, if set, is the caller's CheckRedirect.
		userCheck func(*http.Request, []*http.Request) error
		followed  bool
		fetched   *atomic.Int32 // the JWKS server the redirect leads to
		byCaller  bool          // the caller's CheckRedirect refuses, not the verifier
	}{
		{"https to http on loopback", to(tlsA, plainB.URL+"/jwks"), false, nil, false, fetchPlainB, false},
		{"https to http with AllowHTTPJWKS", to(tlsA, plainB.URL+"/jwks"), true, nil, false, fetchPlainB, false},
		{"https to http://localhost", to(tlsA, "http://localhost:"+port(plainB)+"/jwks"), false, nil, false, fetchPlainB, false},
		{"http on loopback to http elsewhere", to(plainA, "http://jwks.example.com/jwks"), false, nil, false, nil, false},
		{"https to https", to(tlsA, tlsB.URL+"/jwks"), false, nil, true, fetchTLSB, false},
		{"http on loopback to https", to(plainA, tlsB.URL+"/jwks"), false, nil, true, fetchTLSB, false},
		{"http on loopback to http on loopback", to(plainA, plainB.URL+"/jwks"), false, nil, true, fetchPlainB, false},
		{"http on loopback to https to http on loopback", to(plainA, to(tlsA, plainB.URL+"/jwks")), false, nil, false, fetchPlainB, false},
		{"three redirects", tlsA.URL + "/hop/3?k=s3cret-config", false, nil, true, fetchTLSA, false},
		{"four redirects", tlsA.URL + "/hop/4?k=s3cret-config", false, nil, false, fetchTLSA, false},
		{"four redirects, the caller's CheckRedirect allowing them", tlsA.URL + "/hop/4?k=s3cret-config", false,
			func(*http.Request, []*http.Request) error { return nil }, false, fetchTLSA, false},
		{"the caller's CheckRedirect refusing", to(tlsA, tlsB.URL+"/jwks"), false,
			func(*http.Request, []*http.Request) error { return errRefused }, false, fetchTLSB, true},
		{"http on loopback to https, the caller's CheckRedirect allowing", to(plainA, tlsB.URL+"/jwks"), false,
			func(*http.Request, []*http.Request) error { return nil }, true, fetchTLSB, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			// The caller's client trusts the test servers' certificate, and
			// its transport goes to loopback only, recording any other host.
			var elsewhere atomic.Int32
			base := tlsA.Client().Transport
			var checks atomic.Int32
			client := &http.Client{Timeout: 5 * time.Second, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if !isLoopback(r.URL.Hostname()) {
					elsewhere.Add(1)
					return nil, errors.New("not loopback")
				}
				return base.RoundTrip(r)
			})}
			if tt.userCheck != nil {
				client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
					checks.Add(1)
					return tt.userCheck(r, via)
				}
			}
			saved := *client
			var before int32
			if tt.fetched != nil {
				before = tt.fetched.Load()
			}
			v, err := NewJWTVerifier(JWTVerifierOptions{
				Issuers:    []TrustedIssuer{{Issuer: issJWKS, Audiences: []string{testAudience}, JWKSURL: tt.jwksURL, AllowHTTPJWKS: tt.allowHTTP}},
				HTTPClient: client,
				Logger:     slog.New(slog.NewTextHandler(&log, nil)),
				Clock:      func() time.Time { return now },
			})
			if err != nil {
				t.Fatal(err)
			}
			got := outcome(v, token)
			v.Close()
			want := "refused: jwks_unavailable"
			if tt.followed {
				want = "ok: sub=alice method=jwt roles=[admin] scopes=[tools:read tools:write]"
			}
			if got != want {
				t.Errorf("Verify: %q, want %q", got, want)
			}
			if tt.fetched != nil {
				if n := tt.fetched.Load() - before; (n > 0) != tt.followed {
					t.Errorf("the redirect's target was fetched %d times", n)
				}
			}
			if n := elsewhere.Load(); n > 0 {
				t.Errorf("%d requests went to a host that is not loopback", n)
			}
			if tt.userCheck != nil && checks.Load() == 0 {
				t.Error("the caller's CheckRedirect was not called")
			}
			if (client.CheckRedirect == nil) != (saved.CheckRedirect == nil) || client.Transport == nil || client.Timeout != saved.Timeout || client.Jar != saved.Jar {
				t.Error("NewJWTVerifier changed the caller's http.Client")
			}
			if !tt.followed && !strings.Contains(log.String(), "JWKS fetch failed") {
				t.Errorf("the refused fetch was not logged: %q", log.String())
			}
			if refusedByUs := !tt.followed && !tt.byCaller; refusedByUs != strings.Contains(log.String(), `reason=jwks_redirect_refused`) {
				t.Errorf("the log does not say whether the redirect was refused: %q", log.String())
			}
			if strings.Contains(log.String(), "s3cret") {
				t.Errorf("the log holds a URL's query: %q", log.String())
			}
		})
	}
}

func port(s *httptest.Server) string {
	u, _ := url.Parse(s.URL)
	return u.Port()
}

// TestJWKS runs against a real JWKS server: a key rotation is picked up
// without a restart, a flood of random kids causes no fetch beyond the
// first, and a JWKS that is down gives 503.
func TestJWKS(t *testing.T) {
	k := testKeys()
	now := time.Now()
	ctx := context.Background()
	srv := newJWKSServer(t, map[string]any{"ec-1": &k.ec.PublicKey})
	v := testVerifier(t, now, srv.URL, func(o *JWTVerifierOptions) { o.JWKSRefetchInterval = time.Hour })
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches at start = %d, want 1", n)
	}
	claims := mustJSON(t, goodClaims(issJWKS, now, nil))
	if _, err := v.Verify(ctx, signToken(t, `{"alg":"ES256","kid":"ec-1"}`, claims, "ES256", k.ec)); err != nil {
		t.Fatal(err)
	}
	// A token without a kid is tried against the set's keys of its type.
	if _, err := v.Verify(ctx, signToken(t, `{"alg":"ES256"}`, claims, "ES256", k.ec)); err != nil {
		t.Fatalf("no kid: %v", err)
	}
	// The JWK's key type decides, not the token: an RSA token with an EC kid.
	if _, err := v.Verify(ctx, signToken(t, `{"alg":"RS256","kid":"ec-1"}`, claims, "RS256", k.rsa)); !errors.Is(err, errTokenAlgorithm) {
		t.Fatalf("RS256 with an EC kid: %v", err)
	}

	// Rotation: the provider publishes a new key and signs with it.
	srv.set(t, map[string]any{"ec-1": &k.ec.PublicKey, "ed-2": k.ed.Public()})
	if _, err := v.Verify(ctx, signToken(t, `{"alg":"EdDSA","kid":"ed-2"}`, claims, "EdDSA", k.ed)); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches after rotation = %d, want 2", n)
	}

	// A flood of tokens with random kids, concurrently: none passes and none
	// causes a fetch, since the refetch interval has not passed.
	var wg sync.WaitGroup
	var unknown atomic.Int32
	for i := range 200 {
		wg.Go(func() {
			_, err := v.Verify(ctx, signToken(t, fmt.Sprintf(`{"alg":"EdDSA","kid":"random-%d"}`, i), claims, "EdDSA", k.ed))
			if errors.Is(err, errTokenUnknownKey) {
				unknown.Add(1)
			}
		})
	}
	wg.Wait()
	if n := unknown.Load(); n != 200 {
		t.Errorf("%d of 200 random kids were refused as unknown keys", n)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("fetches after the flood = %d, want 2", n)
	}

	// The JWKS goes down: known keys keep working.
	srv.setDown(true)
	if _, err := v.Verify(ctx, signToken(t, `{"alg":"EdDSA","kid":"ed-2"}`, mustJSON(t, goodClaims(issJWKS, now, map[string]any{"jti": "x"})), "EdDSA", k.ed)); err != nil {
		t.Fatalf("cached key while the JWKS is down: %v", err)
	}
}

// TestJWKSRotationWithoutKid: a token without a kid, signed with a key the
// issuer rotated in since the last fetch, causes one refetch, as an unknown
// kid does, whether the new key is of the old key's type or not, and whether
// the set's keys have kids or, like the token, none; tokens without a kid
// that no key verifies cannot make the verifier hammer the issuer.
func TestJWKSRotationWithoutKid(t *testing.T) {
	k := testKeys()
	now := time.Now()
	ctx := context.Background()
	claims := mustJSON(t, goodClaims(issJWKS, now, nil))
	newEC := func() *ecdsa.PrivateKey {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	for _, tc := range []struct {
		name     string
		alg      string
		rotated  crypto.Signer
		old, new string // the kids of the set's keys, before and after
	}{
		{"same key type", "ES256", newEC(), "ec-1", "new"},
		{"another key type", "EdDSA", k.ed, "ec-1", "new"},
		{"same key type, keys without kid", "ES256", newEC(), "", ""},
		{"another key type, keys without kid", "EdDSA", k.ed, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newJWKSServer(t, map[string]any{tc.old: &k.ec.PublicKey})
			v := testVerifier(t, now, srv.URL, func(o *JWTVerifierOptions) { o.JWKSRefetchInterval = time.Hour })
			if _, err := v.Verify(ctx, signToken(t, `{"alg":"ES256"}`, claims, "ES256", k.ec)); err != nil {
				t.Fatal(err)
			}
			srv.set(t, map[string]any{tc.new: tc.rotated.Public()})
			if _, err := v.Verify(ctx, signToken(t, `{"alg":"`+tc.alg+`"}`, claims, tc.alg, tc.rotated)); err != nil {
				t.Fatalf("token of the rotated key: %v", err)
			}
			if n := srv.fetches.Load(); n != 2 {
				t.Fatalf("fetches after rotation = %d, want 2", n)
			}
			// Forged tokens without a kid: refused, and no more fetches
			// within the refetch interval.
			for range 50 {
				_, err := v.Verify(ctx, signToken(t, `{"alg":"ES256"}`, claims, "ES256", newEC()))
				if !errors.Is(err, errTokenSignature) && !errors.Is(err, errTokenUnknownKey) {
					t.Fatalf("forged token: %v", err)
				}
			}
			if n := srv.fetches.Load(); n != 2 {
				t.Errorf("fetches after 50 forged tokens = %d, want 2", n)
			}
		})
	}
}

func TestJWKSDown(t *testing.T) {
	k := testKeys()
	now := time.Now()
	srv := newJWKSServer(t, map[string]any{"ec-1": &k.ec.PublicKey})
	srv.setDown(true)
	var log bytes.Buffer
	start := time.Now()
	v := testVerifier(t, now, srv.URL, func(o *JWTVerifierOptions) {
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
		o.JWKSRefetchInterval = 100 * time.Millisecond
	})
	if !strings.Contains(log.String(), "JWKS fetch failed") {
		t.Errorf("the failed fetch was not logged: %q", log.String())
	}
	token := signToken(t, `{"alg":"ES256","kid":"ec-1"}`, mustJSON(t, goodClaims(issJWKS, now, nil)), "ES256", k.ec)
	h := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, v)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("passed") }))
	for _, tok := range []string{token, signToken(t, `{"alg":"ES256"}`, mustJSON(t, goodClaims(issJWKS, now, nil)), "ES256", k.ec)} {
		w := serveBearer(h, tok)
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("status = %d, want 503", w.Code)
		}
	}
	// Once the JWKS is back, service resumes without a restart, after the
	// retry interval (here the refetch interval, which is shorter).
	srv.setDown(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), token)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after recovery: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// While it was down, the requests above caused few fetches: the start,
	// then at most one per retry interval.
	if n := srv.fetches.Load(); n > 2+int32(time.Since(start)/(100*time.Millisecond)) {
		t.Errorf("%d fetches", n)
	}
}

func TestJWKSBackgroundRefresh(t *testing.T) {
	k := testKeys()
	now := time.Now()
	srv := newJWKSServer(t, map[string]any{"ec-1": &k.ec.PublicKey})
	v := testVerifier(t, now, srv.URL, func(o *JWTVerifierOptions) {
		o.JWKSRefreshInterval = 20 * time.Millisecond
		o.JWKSRefetchInterval = time.Hour
	})
	// Use up the unknown-kid refetch, so only the background refresh can
	// find the new key.
	claims := mustJSON(t, goodClaims(issJWKS, now, nil))
	if _, err := v.Verify(context.Background(), signToken(t, `{"alg":"ES256","kid":"nope"}`, claims, "ES256", k.ec)); !errors.Is(err, errTokenUnknownKey) {
		t.Fatal(err)
	}
	srv.set(t, map[string]any{"ed-2": k.ed.Public()})
	token := signToken(t, `{"alg":"EdDSA","kid":"ed-2"}`, claims, "EdDSA", k.ed)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), token)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background refresh never picked up the new key: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The old key was dropped from the set, and so is refused now.
	if _, err := v.Verify(context.Background(), signToken(t, `{"alg":"ES256","kid":"ec-1"}`, claims, "ES256", k.ec)); !errors.Is(err, errTokenUnknownKey) {
		t.Errorf("removed key: %v", err)
	}
}
