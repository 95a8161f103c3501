package mcpauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The tests of attack review 7.

// outcome summarises what v makes of token: the principal's roles, scopes
// and method, or the reason of the refusal.
func outcome(v *JWTVerifier, token string) string {
	p, err := v.Verify(context.Background(), token)
	if err != nil {
		if c := classOf(err); c != nil {
			return "refused: " + c.reason
		}
		return "refused: " + err.Error()
	}
	return fmt.Sprintf("ok: sub=%s method=%s roles=%v scopes=%v", p.Subject, p.Method, p.Roles, p.Scopes)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// cloneRSA, cloneEC and cloneEd return copies of test keys, so that a test
// may change a key in place without touching the shared ones.
func cloneRSA(k *rsa.PublicKey) *rsa.PublicKey {
	return &rsa.PublicKey{N: new(big.Int).Set(k.N), E: k.E}
}

func cloneEC(k *ecdsa.PublicKey) *ecdsa.PublicKey {
	return &ecdsa.PublicKey{Curve: k.Curve, X: new(big.Int).Set(k.X), Y: new(big.Int).Set(k.Y)}
}

func cloneECPrivate(k *ecdsa.PrivateKey) *ecdsa.PrivateKey {
	return &ecdsa.PrivateKey{PublicKey: *cloneEC(&k.PublicKey), D: new(big.Int).Set(k.D)}
}

// TestJWTVerifierConfigCopied changes, after NewJWTVerifier, every slice and
// map of the options it was given, every key in them and the HTTP client
// they point to, and checks that the verifier makes of a set of tokens what
// it made of them before: the configuration is read once, at construction.
func TestJWTVerifierConfigCopied(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	const (
		issEd  = "https://ed.example.com"
		issEC  = "https://ec.example.com"
		issRS  = "https://rs.example.com"
		issPEM = "https://pem.example.com"
		other  = "https://other.example.com/mcp"
	)
	jwks := newJWKSServer(t, map[string]any{"ec-1": &k.ec.PublicKey})
	claims := func(iss string, change map[string]any) string {
		c := goodClaims(iss, now, map[string]any{"roles": nil, "groups": []string{"admin"}, "role": "user", "perms": "p:read", "scope": "s:read"})
		for n, v := range change {
			c[n] = v
		}
		return mustJSON(t, c)
	}
	hdr := func(alg, kid string) string {
		if kid == "" {
			return `{"alg":"` + alg + `"}`
		}
		return `{"alg":"` + alg + `","kid":"` + kid + `"}`
	}
	type probe struct{ name, token string }
	var probes []probe
	add := func(name, h, c, alg string, key any) {
		probes = append(probes, probe{name, signToken(t, h, c, alg, key)})
	}
	for _, iss := range []struct {
		name, iss, alg string
		key, attacker  any
		kid            string
	}{
		{"hmac", issHMAC, "HS256", k.secret, []byte(strings.Repeat("x", 64)), ""},
		{"ed25519", issEd, "EdDSA", k.ed, nil, ""},
		{"ecdsa", issEC, "ES256", k.ec, k.ecAttacker, ""},
		{"rsa", issRS, "RS256", k.rsa, k.rsaAttacker, ""},
		{"pem", issPEM, "RS256", k.rsa, k.rsaAttacker, ""},
		{"jwks", issJWKS, "ES256", k.ec, k.ecAttacker, "ec-1"},
	} {
		add(iss.name+" good", hdr(iss.alg, iss.kid), claims(iss.iss, nil), iss.alg, iss.key)
		add(iss.name+" other audience", hdr(iss.alg, iss.kid), claims(iss.iss, map[string]any{"aud": other}), iss.alg, iss.key)
		if iss.attacker != nil {
			add(iss.name+" attacker's key", hdr(iss.alg, iss.kid), claims(iss.iss, nil), iss.alg, iss.attacker)
		}
	}
	add("hmac HS512", hdr("HS512", ""), claims(issHMAC, nil), "HS512", k.secret)
	add("jwks unknown kid", hdr("ES256", "ec-2"), claims(issJWKS, nil), "ES256", k.ec)

	// newOpts returns options of their own, keys included, for each case.
	newOpts := func() JWTVerifierOptions {
		der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return JWTVerifierOptions{
			Issuers: []TrustedIssuer{
				{Issuer: issHMAC, Audiences: []string{testAudience}, Secret: slices.Clone(k.secret), Algorithms: []string{"HS256"},
					RoleClaims: []string{"groups"}, ScopeClaims: []string{"perms"}},
				{Issuer: issEd, Audiences: []string{testAudience}, PublicKeys: []crypto.PublicKey{slices.Clone(k.ed.Public().(ed25519.PublicKey))}},
				{Issuer: issEC, Audiences: []string{testAudience}, PublicKeys: []crypto.PublicKey{cloneEC(&k.ec.PublicKey)}},
				{Issuer: issRS, Audiences: []string{testAudience}, PublicKeys: []crypto.PublicKey{cloneRSA(&k.rsa.PublicKey)}},
				{Issuer: issPEM, Audiences: []string{testAudience}, PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})},
				{Issuer: issJWKS, Audiences: []string{testAudience}, JWKSURL: jwks.URL, Algorithms: []string{"ES256"},
					RoleClaims: []string{"groups"}, ScopeClaims: []string{"perms"}},
			},
			CacheTTL:            -1, // every Verify reads the configuration
			JWKSRefetchInterval: time.Nanosecond,
			HTTPClient:          &http.Client{Transport: http.DefaultTransport, Timeout: 5 * time.Second},
			Logger:              slog.New(slog.DiscardHandler),
			Clock:               func() time.Time { return now },
		}
	}
	down := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("down") })
	tests := []struct {
		name   string
		mutate func(o *JWTVerifierOptions)
	}{
		{"Issuers[i] replaced", func(o *JWTVerifierOptions) {
			for i := range o.Issuers {
				o.Issuers[i] = TrustedIssuer{Issuer: o.Issuers[i].Issuer, SkipAudienceCheck: true, Secret: []byte(strings.Repeat("x", 64))}
			}
		}},
		{"Issuers[i].Issuer", func(o *JWTVerifierOptions) {
			for i := range o.Issuers {
				o.Issuers[i].Issuer += ".evil"
			}
		}},
		{"Audiences[0]", func(o *JWTVerifierOptions) {
			for _, ti := range o.Issuers {
				ti.Audiences[0] = other
			}
		}},
		{"Algorithms[0]", func(o *JWTVerifierOptions) {
			o.Issuers[0].Algorithms[0] = "HS512"
			o.Issuers[5].Algorithms[0] = "RS256"
		}},
		{"RoleClaims[0]", func(o *JWTVerifierOptions) {
			o.Issuers[0].RoleClaims[0] = "role"
			o.Issuers[5].RoleClaims[0] = "role"
		}},
		{"ScopeClaims[0]", func(o *JWTVerifierOptions) {
			o.Issuers[0].ScopeClaims[0] = "scope"
			o.Issuers[5].ScopeClaims[0] = "scope"
		}},
		{"Secret bytes", func(o *JWTVerifierOptions) { copy(o.Issuers[0].Secret, strings.Repeat("x", 64)) }},
		{"PublicKeys[0] replaced", func(o *JWTVerifierOptions) {
			o.Issuers[1].PublicKeys[0] = k.ecAttacker.Public()
			o.Issuers[2].PublicKeys[0] = k.ecAttacker.Public()
			o.Issuers[3].PublicKeys[0] = k.rsaAttacker.Public()
		}},
		{"PublicKeys Ed25519 key bytes", func(o *JWTVerifierOptions) {
			_, other, _ := ed25519.GenerateKey(nil)
			copy(o.Issuers[1].PublicKeys[0].(ed25519.PublicKey), other.Public().(ed25519.PublicKey))
		}},
		{"PublicKeys ECDSA point", func(o *JWTVerifierOptions) {
			pub := o.Issuers[2].PublicKeys[0].(*ecdsa.PublicKey)
			pub.X.Set(k.ecAttacker.X)
			pub.Y.Set(k.ecAttacker.Y)
		}},
		{"PublicKeys RSA modulus", func(o *JWTVerifierOptions) {
			o.Issuers[3].PublicKeys[0].(*rsa.PublicKey).N.Set(k.rsaAttacker.N)
		}},
		{"PublicKeyPEM bytes", func(o *JWTVerifierOptions) { clear(o.Issuers[4].PublicKeyPEM) }},
		{"JWKSURL", func(o *JWTVerifierOptions) { o.Issuers[5].JWKSURL = "http://127.0.0.1:1/jwks" }},
		{"HTTPClient transport", func(o *JWTVerifierOptions) { o.HTTPClient.Transport = down }},
		{"HTTPClient replaced", func(o *JWTVerifierOptions) { *o.HTTPClient = http.Client{Transport: down} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := newOpts()
			v, err := NewJWTVerifier(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			before := make([]string, len(probes))
			for i, p := range probes {
				before[i] = outcome(v, p.token)
			}
			// The outcomes must be worth keeping: good tokens pass with the
			// configured claims, the others are refused.
			if !strings.Contains(before[0], "roles=[admin] scopes=[p:read]") || !strings.HasPrefix(before[1], "refused") {
				t.Fatalf("before the change: %q, %q", before[0], before[1])
			}
			tt.mutate(&opts)
			for i, p := range probes {
				if got := outcome(v, p.token); got != before[i] {
					t.Errorf("%s: %q after the change, %q before", p.name, got, before[i])
				}
			}
		})
	}
}

// TestJWTIssuerConfigCopied changes, after NewJWTIssuer, the slices and keys
// of its options, and the results of TrustedIssuer and PublicKey, and
// checks that the issuer mints what it minted before, verifiable with its
// original key, and reports the same configuration.
func TestJWTIssuerConfigCopied(t *testing.T) {
	k := testKeys()
	const other = "https://other.example.com/mcp"
	_, edOther, _ := ed25519.GenerateKey(nil)
	keys := []struct {
		name string
		key  func() any
		// verifyKey is the original verification key, kept apart from
		// whatever the test changes.
		verifyKey func() TrustedIssuer
	}{
		{"hmac", func() any { return slices.Clone(k.secret) }, func() TrustedIssuer { return TrustedIssuer{Secret: slices.Clone(k.secret)} }},
		{"ecdsa", func() any { return cloneECPrivate(k.ec) }, func() TrustedIssuer {
			return TrustedIssuer{PublicKeys: []crypto.PublicKey{cloneEC(&k.ec.PublicKey)}}
		}},
		{"ed25519", func() any { return slices.Clone(k.ed) }, func() TrustedIssuer {
			return TrustedIssuer{PublicKeys: []crypto.PublicKey{slices.Clone(k.ed.Public().(ed25519.PublicKey))}}
		}},
	}
	tests := []struct {
		name string
		// mutate changes what the issuer was given or gave out. args are
		// the audiences passed to TrustedIssuer before the change.
		mutate func(o *JWTIssuerOptions, i *JWTIssuer, args []string, ti TrustedIssuer)
	}{
		{"Audience[0]", func(o *JWTIssuerOptions, _ *JWTIssuer, _ []string, _ TrustedIssuer) { o.Audience[0] = other }},
		{"Key bytes or scalar", func(o *JWTIssuerOptions, _ *JWTIssuer, _ []string, _ TrustedIssuer) {
			switch key := o.Key.(type) {
			case []byte:
				copy(key, strings.Repeat("x", len(key)))
			case ed25519.PrivateKey:
				copy(key, edOther)
			case *ecdsa.PrivateKey:
				key.D.Set(k.ecAttacker.D)
				key.X.Set(k.ecAttacker.X)
				key.Y.Set(k.ecAttacker.Y)
			}
		}},
		{"TrustedIssuer arguments", func(_ *JWTIssuerOptions, _ *JWTIssuer, args []string, _ TrustedIssuer) { args[0] = other }},
		{"TrustedIssuer result", func(_ *JWTIssuerOptions, _ *JWTIssuer, _ []string, ti TrustedIssuer) {
			ti.Audiences[0] = other
			ti.Algorithms[0] = "none"
			copy(ti.Secret, strings.Repeat("x", len(ti.Secret)))
			for _, pub := range ti.PublicKeys {
				switch pub := pub.(type) {
				case *ecdsa.PublicKey:
					pub.X.Set(k.ecAttacker.X)
					pub.Y.Set(k.ecAttacker.Y)
				case ed25519.PublicKey:
					copy(pub, edOther.Public().(ed25519.PublicKey))
				}
			}
		}},
		{"PublicKey result", func(_ *JWTIssuerOptions, i *JWTIssuer, _ []string, _ TrustedIssuer) {
			switch pub := i.PublicKey().(type) {
			case *ecdsa.PublicKey:
				pub.X.Set(k.ecAttacker.X)
				pub.Y.Set(k.ecAttacker.Y)
			case ed25519.PublicKey:
				copy(pub, edOther.Public().(ed25519.PublicKey))
			}
		}},
	}
	for _, key := range keys {
		for _, tt := range tests {
			t.Run(key.name+"/"+tt.name, func(t *testing.T) {
				opts := JWTIssuerOptions{Issuer: "https://as.example.com", Key: key.key(), Audience: []string{testAudience}}
				i, err := NewJWTIssuer(opts)
				if err != nil {
					t.Fatal(err)
				}
				args := []string{testAudience}
				ti := i.TrustedIssuer(args...)
				// The verifier that checks the tokens has the original key.
				trusted := key.verifyKey()
				trusted.Issuer, trusted.Audiences = i.issuer, []string{testAudience}
				v, err := NewJWTVerifier(JWTVerifierOptions{Issuers: []TrustedIssuer{trusted}, CacheTTL: -1})
				if err != nil {
					t.Fatal(err)
				}
				defer v.Close()
				// What the issuer does and says now; and, unless the
				// case changes it, the TrustedIssuer it gave out before.
				observe := func() string {
					tok, err := i.Mint(TokenClaims{Subject: "svc", Roles: []string{"r"}})
					if err != nil {
						t.Fatal(err)
					}
					jwks, _ := i.JWKS()
					now := i.TrustedIssuer()
					s := fmt.Sprintf("%s | TrustedIssuer() %v %v %x %s | PublicKey %s | JWKS %s | kid %s",
						outcome(v, tok), now.Audiences, now.Algorithms, now.Secret, publicKeysString(now.PublicKeys),
						publicKeysString([]crypto.PublicKey{i.PublicKey()}), jwks, i.kid)
					if tt.name != "TrustedIssuer result" {
						s += fmt.Sprintf(" | given out %v %v %x %s", ti.Audiences, ti.Algorithms, ti.Secret, publicKeysString(ti.PublicKeys))
					}
					return s
				}
				before := observe()
				if !strings.HasPrefix(before, "ok:") {
					t.Fatalf("before the change: %s", before)
				}
				tt.mutate(&opts, i, args, ti)
				if after := observe(); after != before {
					t.Errorf("after the change:\n%s\nbefore:\n%s", after, before)
				}
			})
		}
	}
}

func publicKeysString(keys []crypto.PublicKey) string {
	var b strings.Builder
	for _, k := range keys {
		switch k := k.(type) {
		case *ecdsa.PublicKey:
			fmt.Fprintf(&b, "ec(%x,%x)", k.X, k.Y)
		case nil:
			b.WriteString("none")
		default:
			fmt.Fprintf(&b, "%T(%x)", k, k)
		}
	}
	return b.String()
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
