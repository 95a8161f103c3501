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
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testKeys are generated once: RSA key generation is slow.
var testKeys = sync.OnceValue(func() (k struct {
	rsa, rsaAttacker *rsa.PrivateKey
	ec, ecAttacker   *ecdsa.PrivateKey
	ed               ed25519.PrivateKey
	secret           []byte
	rsaPEM           []byte
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsaAttacker, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.ecAttacker, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	k.secret = bytes.Repeat([]byte("0123456789abcdef"), 4) // 64 bytes: enough for HS512
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		panic(err)
	}
	k.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return k
})

const (
	testAudience = "https://mcp.example.com/mcp"
	issRSA       = "https://rsa.example.com"
	issHMAC      = "https://hmac.example.com"
	issJWKS      = "https://jwks.example.com"
)

// signToken builds a token from a raw header and raw claims, signed with
// key by alg's golang-jwt method.
func signToken(t testing.TB, hdr, claims string, alg string, key any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(claims))
	sig, err := jwt.GetSigningMethod(alg).Sign(signed, key)
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + enc.EncodeToString(sig)
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goodClaims returns valid claims for iss at now, with changes applied.
func goodClaims(iss string, now time.Time, change map[string]any) map[string]any {
	c := map[string]any{
		"iss": iss, "sub": "alice", "aud": testAudience,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "jti-1",
		"scope": "tools:read tools:write", "roles": []string{"admin"},
	}
	for k, v := range change {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// jwksServer serves a JWK Set that a test can change, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	down    bool
	fetches atomic.Int32
}

func newJWKSServer(t testing.TB, keys map[string]any) *jwksServer {
	s := &jwksServer{}
	s.set(t, keys)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.down {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

// set publishes keys (kid -> public key).
func (s *jwksServer) set(t testing.TB, keys map[string]any) {
	t.Helper()
	type jwk = map[string]string
	var set struct {
		Keys []jwk `json:"keys"`
	}
	enc := base64.RawURLEncoding
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			set.Keys = append(set.Keys, jwk{"kty": "RSA", "kid": kid, "use": "sig", "n": enc.EncodeToString(k.N.Bytes()), "e": "AQAB"})
		case *ecdsa.PublicKey:
			b, _ := k.Bytes()
			set.Keys = append(set.Keys, jwk{"kty": "EC", "kid": kid, "crv": "P-256", "x": enc.EncodeToString(b[1:33]), "y": enc.EncodeToString(b[33:])})
		case ed25519.PublicKey:
			set.Keys = append(set.Keys, jwk{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": enc.EncodeToString(k)})
		default:
			t.Fatalf("jwksServer: %T", k)
		}
	}
	s.mu.Lock()
	s.body = []byte(mustJSON(t, set))
	s.mu.Unlock()
}

func (s *jwksServer) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// testVerifier trusts three issuers: an RSA key by PEM, an HMAC secret and a
// JWKS (an EC key, kid "ec-1").
func testVerifier(t testing.TB, now time.Time, jwksURL string, change func(*JWTVerifierOptions)) *JWTVerifier {
	t.Helper()
	k := testKeys()
	opts := JWTVerifierOptions{
		Issuers: []TrustedIssuer{
			{Issuer: issRSA, Audiences: []string{testAudience}, PublicKeyPEM: k.rsaPEM},
			{Issuer: issHMAC, Audiences: []string{testAudience}, Secret: k.secret},
			{Issuer: issJWKS, Audiences: []string{testAudience}, JWKSURL: jwksURL, Method: MethodOAuth},
		},
		Clock:  func() time.Time { return now },
		Logger: slog.New(slog.DiscardHandler),
	}
	if change != nil {
		change(&opts)
	}
	v, err := NewJWTVerifier(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// serveBearer sends h a POST to /mcp with token as its Bearer credential,
// and returns the response.
func serveBearer(h http.Handler, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestJWTBadInput sends each bad token through Require and checks that it
// gets a 401 with its class's description, that the audit event names the
// class, and that neither the response nor the log holds the token.
func TestJWTBadInput(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	jwks := newJWKSServer(t, map[string]any{"ec-1": &k.ec.PublicKey})
	var attackerHits atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer attacker.Close()
	v := testVerifier(t, now, jwks.URL, nil)
	rs := func(claims map[string]any) string {
		return signToken(t, `{"alg":"RS256","typ":"JWT"}`, mustJSON(t, claims), "RS256", k.rsa)
	}
	claims := func(change map[string]any) map[string]any { return goodClaims(issRSA, now, change) }
	valid := rs(claims(nil))
	flipped := func() string {
		i := strings.LastIndexByte(valid, '.')
		sig, _ := base64.RawURLEncoding.DecodeString(valid[i+1:])
		sig[len(sig)/2] ^= 0x04
		return valid[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
	}()
	enc := base64.RawURLEncoding.EncodeToString
	deep := `{"iss":"` + issRSA + `","sub":"a","aud":"` + testAudience + `","exp":` + fmt.Sprint(now.Add(time.Hour).Unix()) + `,"x":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`

	tests := []struct {
		name  string
		token string
		class error
	}{
		{"alg none, empty signature", enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(mustJSON(t, claims(nil)))) + ".", errTokenAlgorithm},
		{"alg none, signature", enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(mustJSON(t, claims(nil)))) + "." + enc([]byte("sig")), errTokenAlgorithm},
		{"alg None", signToken(t, `{"alg":"None"}`, mustJSON(t, claims(nil)), "HS256", k.secret), errTokenAlgorithm},
		{"HS256 signed with the RSA public key PEM", signToken(t, `{"alg":"HS256"}`, mustJSON(t, claims(nil)), "HS256", k.rsaPEM), errTokenAlgorithm},
		{"RS256 token for the HMAC issuer", signToken(t, `{"alg":"RS256"}`, mustJSON(t, goodClaims(issHMAC, now, nil)), "RS256", k.rsa), errTokenAlgorithm},
		{"ES256 token for the RSA issuer", signToken(t, `{"alg":"ES256"}`, mustJSON(t, claims(nil)), "ES256", k.ec), errTokenAlgorithm},
		{"alg switched RS256 to PS256", strings.Replace(valid, valid[:strings.IndexByte(valid, '.')], enc([]byte(`{"alg":"PS256","typ":"JWT"}`)), 1), errTokenSignature},
		{"kid with ../", signToken(t, `{"alg":"ES256","kid":"../../../../etc/passwd"}`, mustJSON(t, goodClaims(issJWKS, now, nil)), "ES256", k.ecAttacker), errTokenUnknownKey},
		{"kid with SQL", signToken(t, `{"alg":"ES256","kid":"' OR '1'='1'; DROP TABLE keys; --"}`, mustJSON(t, goodClaims(issJWKS, now, nil)), "ES256", k.ecAttacker), errTokenUnknownKey},
		{"kid with ../, local keys", signToken(t, `{"alg":"RS256","kid":"../../etc/passwd"}`, mustJSON(t, claims(nil)), "RS256", k.rsaAttacker), errTokenSignature},
		{"jku elsewhere", signToken(t, `{"alg":"ES256","kid":"attacker","jku":"`+attacker.URL+`"}`, mustJSON(t, goodClaims(issJWKS, now, nil)), "ES256", k.ecAttacker), errTokenUnknownKey},
		{"x5u elsewhere", signToken(t, `{"alg":"RS256","x5u":"`+attacker.URL+`"}`, mustJSON(t, claims(nil)), "RS256", k.rsaAttacker), errTokenSignature},
		{"embedded jwk", signToken(t, `{"alg":"RS256","jwk":{"kty":"RSA","n":"`+enc(k.rsaAttacker.N.Bytes())+`","e":"AQAB"}}`, mustJSON(t, claims(nil)), "RS256", k.rsaAttacker), errTokenSignature},
		{"unknown crit", signToken(t, `{"alg":"RS256","crit":["exp"],"exp":1}`, mustJSON(t, claims(nil)), "RS256", k.rsa), errTokenMalformed},
		{"typ of a DPoP proof", signToken(t, `{"alg":"RS256","typ":"dpop+jwt"}`, mustJSON(t, claims(nil)), "RS256", k.rsa), errTokenType},
		{"expired", rs(claims(map[string]any{"exp": now.Add(-time.Second).Unix()})), errTokenExpired},
		{"expires now", rs(claims(map[string]any{"exp": now.Unix()})), errTokenExpired},
		{"no exp", rs(claims(map[string]any{"exp": nil})), errTokenMalformed},
		{"exp a string", rs(claims(map[string]any{"exp": "tomorrow"})), errTokenMalformed},
		{"not yet valid", rs(claims(map[string]any{"nbf": now.Add(time.Minute).Unix()})), errTokenNotYetValid},
		{"issued in the future", rs(claims(map[string]any{"iat": now.Add(time.Minute).Unix()})), errTokenNotYetValid},
		{"wrong iss", rs(claims(map[string]any{"iss": "https://evil.example.com"})), errTokenIssuer},
		{"no iss", rs(claims(map[string]any{"iss": nil})), errTokenIssuer},
		{"wrong aud", rs(claims(map[string]any{"aud": "https://other.example.com/mcp"})), errTokenAudience},
		{"wrong aud in an array", rs(claims(map[string]any{"aud": []string{"a", "b"}})), errTokenAudience},
		{"aud prefix", rs(claims(map[string]any{"aud": testAudience + "/more"})), errTokenAudience},
		{"no aud", rs(claims(map[string]any{"aud": nil})), errTokenAudience},
		{"aud a number", rs(claims(map[string]any{"aud": 7})), errTokenMalformed},
		{"no sub", rs(claims(map[string]any{"sub": nil})), errTokenMalformed},
		{"bound to a client certificate, none presented", rs(claims(map[string]any{"cnf": map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}})), errCertMismatch}, // no client certificate on this request
		{"bound to a DPoP key", rs(claims(map[string]any{"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})), errTokenBound},
		{"cnf null", rs(claims(map[string]any{"cnf": json.RawMessage("null")})), errTokenBound},
		{"cnf empty", rs(claims(map[string]any{"cnf": map[string]any{}})), errTokenBound},
		{"1 MiB token", valid[:strings.IndexByte(valid, '.')+1] + strings.Repeat("A", 1<<20) + valid[strings.LastIndexByte(valid, '.'):], errTokenTooLarge},
		{"9 KiB token", valid[:strings.IndexByte(valid, '.')+1] + strings.Repeat("A", 9<<10) + valid[strings.LastIndexByte(valid, '.'):], errTokenTooLarge},
		{"truncated signature", valid[:len(valid)-10], errTokenSignature},
		{"truncated signature, bad length", valid[:len(valid)-1], errTokenMalformed},
		{"truncated claims", valid[:strings.IndexByte(valid, '.')+20] + valid[strings.LastIndexByte(valid, '.'):], errTokenMalformed},
		{"truncated header", valid[5:], errTokenMalformed},
		{"two segments", valid[:strings.LastIndexByte(valid, '.')], ErrInvalidCredentials},
		{"bad base64 header", "eyJhbGciOiJSUzI1NiJ9x" + valid[strings.IndexByte(valid, '.'):], errTokenMalformed},
		{"header not JSON", enc([]byte("alg=RS256")) + valid[strings.IndexByte(valid, '.'):], errTokenMalformed},
		{"header an array", enc([]byte(`["alg"]`)) + valid[strings.IndexByte(valid, '.'):], errTokenMalformed},
		{"JSON bomb: deep nesting", signToken(t, `{"alg":"RS256"}`, deep, "RS256", k.rsa), errTokenMalformed},
		{"JSON bomb: huge number", signToken(t, `{"alg":"RS256"}`, `{"iss":"`+issRSA+`","sub":"a","aud":"`+testAudience+`","exp":1e999999}`, "RS256", k.rsa), errTokenMalformed},
		{"JSON bomb: deep header", signToken(t, `{"alg":"RS256","x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`, mustJSON(t, claims(nil)), "RS256", k.rsa), errTokenMalformed},
		{"duplicate claim", signToken(t, `{"alg":"RS256"}`, `{"iss":"`+issRSA+`","sub":"alice","sub":"admin","aud":"`+testAudience+`","exp":`+fmt.Sprint(now.Add(time.Hour).Unix())+`}`, "RS256", k.rsa), errTokenMalformed},
		{"duplicate claim, escaped", signToken(t, `{"alg":"RS256"}`, `{"iss":"`+issRSA+`","sub":"alice","s\u0075b":"admin","aud":"`+testAudience+`","exp":`+fmt.Sprint(now.Add(time.Hour).Unix())+`}`, "RS256", k.rsa), errTokenMalformed},
		{"duplicate alg", signToken(t, `{"alg":"RS256","alg":"HS256"}`, mustJSON(t, claims(nil)), "RS256", k.rsa), errTokenMalformed},
		{"case-folded alg", signToken(t, `{"ALG":"RS256"}`, mustJSON(t, claims(nil)), "RS256", k.rsa), errTokenMalformed},
		{"flipped signature bit", flipped, errTokenSignature},
		{"signed by another key", signToken(t, `{"alg":"RS256"}`, mustJSON(t, claims(nil)), "RS256", k.rsaAttacker), errTokenSignature},
		{"HS256 with a wrong secret", signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, nil)), "HS256", bytes.Repeat([]byte("x"), 32)), errTokenSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			h := Require(&RequireOptions{Logger: slog.New(slog.NewTextHandler(&log, nil))}, v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				t.Error("the request passed")
			}))
			w := serveBearer(h, tt.token)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401", w.Code)
			}
			c := classOf(tt.class)
			if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) || !strings.Contains(got, c.desc) {
				t.Errorf("WWW-Authenticate = %q, want the description %q", got, c.desc)
			}
			if !strings.Contains(log.String(), "reason="+c.reason) {
				t.Errorf("audit event %q lacks reason=%s", log.String(), c.reason)
			}
			sig := tt.token[strings.LastIndexByte(tt.token, '.')+1:]
			if len(sig) > 8 && (strings.Contains(log.String(), sig) || strings.Contains(w.Body.String(), sig)) {
				t.Error("the token leaked into the log or the response")
			}
		})
	}
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("the jku/x5u server was fetched %d times", n)
	}
	// The valid token passes, so the failures above are the tokens' own.
	if _, err := v.Verify(context.Background(), valid); err != nil {
		t.Fatalf("valid token: %v", err)
	}
}

func TestJWTVerifyPrincipal(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	jwks := newJWKSServer(t, map[string]any{"ec-1": &k.ec.PublicKey})
	v := testVerifier(t, now, jwks.URL, func(o *JWTVerifierOptions) {
		o.Leeway = 30 * time.Second
		o.Issuers = append(o.Issuers,
			TrustedIssuer{Issuer: "https://keycloak.example.com/realms/r", Audiences: []string{testAudience + "/"}, Secret: k.secret, RoleClaims: []string{"realm_access.roles", "resource_access.mcp.roles"}},
			TrustedIssuer{Issuer: "https://tenant.auth0.com/", Audiences: []string{testAudience}, PublicKeys: []crypto.PublicKey{k.ed.Public()}, RoleClaims: []string{"https://mcp.example.com/roles"}},
		)
	})
	tests := []struct {
		name     string
		token    string
		subject  string
		method   Method
		issuer   string
		clientID string
		roles    []string
		scopes   []string
		keyID    string
	}{
		{
			name:    "RSA, scope string and roles array",
			token:   signToken(t, `{"alg":"RS256","typ":"at+jwt","kid":"rsa-1"}`, mustJSON(t, goodClaims(issRSA, now, nil)), "RS256", k.rsa),
			subject: "alice", method: MethodJWT, issuer: issRSA, roles: []string{"admin"}, scopes: []string{"tools:read", "tools:write"}, keyID: "rsa-1",
		},
		{
			name:    "PS384, the tutorial's role and permissions",
			token:   signToken(t, `{"alg":"PS384"}`, mustJSON(t, goodClaims(issRSA, now, map[string]any{"scope": nil, "roles": nil, "role": "editor", "permissions": []string{"read", "write"}})), "PS384", k.rsa),
			subject: "alice", method: MethodJWT, issuer: issRSA, roles: []string{"editor"}, scopes: []string{"read", "write"}, keyID: "jti-1",
		},
		{
			name:    "HS512, scp array, azp, expired within leeway, aud with a slash",
			token:   signToken(t, `{"alg":"HS512","typ":"JWT"}`, mustJSON(t, goodClaims(issHMAC, now, map[string]any{"scope": nil, "scp": []string{"a", "b"}, "azp": "client-9", "exp": now.Add(-10 * time.Second).Unix(), "aud": []string{"x", testAudience + "/"}})), "HS512", k.secret),
			subject: "alice", method: MethodJWT, issuer: issHMAC, clientID: "client-9", roles: []string{"admin"}, scopes: []string{"a", "b"}, keyID: "jti-1",
		},
		{
			name:    "JWKS, RFC 9068 at+jwt with client_id, method oauth",
			token:   signToken(t, `{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`, mustJSON(t, goodClaims(issJWKS, now, map[string]any{"client_id": "c1", "roles": nil})), "ES256", k.ec),
			subject: "alice", method: MethodOAuth, issuer: issJWKS, clientID: "c1", scopes: []string{"tools:read", "tools:write"}, keyID: "ec-1",
		},
		{
			name:    "Keycloak realm_access.roles",
			token:   signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims("https://keycloak.example.com/realms/r", now, map[string]any{"roles": nil, "realm_access": map[string]any{"roles": []string{"offline_access", "mcp-admin"}}, "resource_access": map[string]any{"mcp": map[string]any{"roles": []string{"mcp-admin", "viewer"}}}})), "HS256", k.secret),
			subject: "alice", method: MethodJWT, issuer: "https://keycloak.example.com/realms/r", roles: []string{"offline_access", "mcp-admin", "viewer"}, scopes: []string{"tools:read", "tools:write"}, keyID: "jti-1",
		},
		{
			name:    "Auth0 namespaced roles, EdDSA",
			token:   signToken(t, `{"alg":"EdDSA"}`, mustJSON(t, goodClaims("https://tenant.auth0.com/", now, map[string]any{"roles": "ignored", "https://mcp.example.com/roles": []string{"support"}})), "EdDSA", k.ed),
			subject: "alice", method: MethodJWT, issuer: "https://tenant.auth0.com/", roles: []string{"support"}, scopes: []string{"tools:read", "tools:write"}, keyID: "jti-1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token)
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("%s|%s|%s|%s|%q|%q|%s", p.Subject, p.Method, p.Issuer, p.ClientID, p.Roles, p.Scopes, p.KeyID)
			want := fmt.Sprintf("%s|%s|%s|%s|%q|%q|%s", tt.subject, tt.method, tt.issuer, tt.clientID, tt.roles, tt.scopes, tt.keyID)
			if got != want {
				t.Errorf("principal\n got  %s\n want %s", got, want)
			}
			if p.Claims["sub"] != tt.subject {
				t.Errorf("Claims[sub] = %v", p.Claims["sub"])
			}
			if p.UserID() != string(tt.method)+":"+tt.issuer+"#"+tt.subject {
				t.Errorf("UserID = %s", p.UserID())
			}
		})
	}
}

func TestNewJWTVerifierRefusesBadConfig(t *testing.T) {
	k := testKeys()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	smallPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	privDER, _ := x509.MarshalPKCS8PrivateKey(k.ec)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	aud := []string{testAudience}
	tests := []struct {
		name string
		iss  []TrustedIssuer
	}{
		{"no issuer", nil},
		{"empty issuer", []TrustedIssuer{{Audiences: aud, Secret: k.secret}}},
		{"no keys", []TrustedIssuer{{Issuer: "i", Audiences: aud}}},
		{"no audiences", []TrustedIssuer{{Issuer: "i", Secret: k.secret}}},
		{"short secret", []TrustedIssuer{{Issuer: "i", Audiences: aud, Secret: []byte("0123456789abcdef0123456789abcde")}}},
		{"HS512 with a 32-byte secret", []TrustedIssuer{{Issuer: "i", Audiences: aud, Secret: k.secret[:32], Algorithms: []string{"HS512"}}}},
		{"HS384 with a 47-byte secret", []TrustedIssuer{{Issuer: "i", Audiences: aud, Secret: k.secret[:47], Algorithms: []string{"HS384"}}}},
		{"JWKS over plain http to another host", []TrustedIssuer{{Issuer: "i", Audiences: aud, JWKSURL: "http://idp.example.com/jwks"}}},
		{"1024-bit RSA", []TrustedIssuer{{Issuer: "i", Audiences: aud, PublicKeyPEM: smallPEM}}},
		{"private key PEM", []TrustedIssuer{{Issuer: "i", Audiences: aud, PublicKeyPEM: privPEM}}},
		{"garbage PEM", []TrustedIssuer{{Issuer: "i", Audiences: aud, PublicKeyPEM: []byte("not pem")}}},
		{"secret in PublicKeys", []TrustedIssuer{{Issuer: "i", Audiences: aud, PublicKeys: []crypto.PublicKey{k.secret}}}},
		{"HS256 with an RSA key", []TrustedIssuer{{Issuer: "i", Audiences: aud, PublicKeyPEM: k.rsaPEM, Algorithms: []string{"HS256"}}}},
		{"alg none", []TrustedIssuer{{Issuer: "i", Audiences: aud, Secret: k.secret, Algorithms: []string{"none"}}}},
		{"JWKS and keys", []TrustedIssuer{{Issuer: "i", Audiences: aud, Secret: k.secret, JWKSURL: "https://idp.example.com/jwks"}}},
		{"JWKS not a URL", []TrustedIssuer{{Issuer: "i", Audiences: aud, JWKSURL: "file:///etc/passwd"}}},
		{"HS256 from a JWKS", []TrustedIssuer{{Issuer: "i", Audiences: aud, JWKSURL: "https://idp.example.com/jwks", Algorithms: []string{"HS256"}}}},
		{"twice", []TrustedIssuer{{Issuer: "i", Audiences: aud, Secret: k.secret}, {Issuer: "i", Audiences: aud, Secret: k.secret}}},
		{"bad method", []TrustedIssuer{{Issuer: "i", Audiences: aud, Secret: k.secret, Method: MethodAPIKey}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewJWTVerifier(JWTVerifierOptions{Issuers: tt.iss})
			if err == nil {
				v.Close()
				t.Fatal("NewJWTVerifier accepted the configuration")
			}
			if !strings.HasPrefix(err.Error(), "mcpauth: ") {
				t.Errorf("error %q lacks the mcpauth: prefix", err)
			}
		})
	}
}

// TestJWTRoutingWithAPIKeys checks that a JWT verifier and API keys compose
// in either order: each takes its own bearer values.
func TestJWTRoutingWithAPIKeys(t *testing.T) {
	k := testKeys()
	now := time.Now()
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", nil)
	key, _ := GenerateAPIKey()
	keys, err := NewAPIKeys(APIKey{Key: key, Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	token := signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, nil)), "HS256", k.secret)
	for _, order := range [][]Authenticator{{keys, v}, {v, keys}} {
		h := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, order...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := PrincipalFromHTTPRequest(r)
			fmt.Fprint(w, p.Method, ":", p.Subject)
		}))
		for _, tc := range []struct{ cred, want string }{{token, "jwt:alice"}, {key, "apikey:bob"}} {
			w := serveBearer(h, tc.cred)
			if w.Code != 200 || w.Body.String() != tc.want {
				t.Errorf("%T first: %d %q, want %q", order[0], w.Code, w.Body.String(), tc.want)
			}
		}
	}
}

func TestJWTUnsecuredShapeAndAPIKeys(t *testing.T) {
	// A configured API key may end in a dot; the JWT verifier must leave it
	// alone even when it comes first.
	key := "abcdefghijk.lmnopqrstu."
	keys, err := NewAPIKeys(APIKey{Key: key, Subject: "dot"})
	if err != nil {
		t.Fatal(err)
	}
	v := testVerifier(t, time.Now(), "http://127.0.0.1:1/jwks", nil)
	h := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, v, keys)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, PrincipalFromHTTPRequest(r).Subject)
	}))
	w := serveBearer(h, key)
	if w.Code != 200 || w.Body.String() != "dot" {
		t.Errorf("API key ending in a dot: %d %q", w.Code, w.Body.String())
	}
}

func TestJWTMaxTokenSize(t *testing.T) {
	k := testKeys()
	now := time.Now()
	big := signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, map[string]any{"pad": strings.Repeat("x", 9<<10)})), "HS256", k.secret)
	small := signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, map[string]any{"pad": strings.Repeat("x", 1<<10)})), "HS256", k.secret)
	for _, tc := range []struct {
		max   int
		token string
		want  int
	}{
		{0, small, 200},
		{0, big, 401},
		{16 << 10, big, 200},
		{1 << 10, small, 401},
	} {
		v := testVerifier(t, now, "http://127.0.0.1:1/jwks", func(o *JWTVerifierOptions) { o.MaxTokenSize = tc.max })
		h := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, v)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		w := serveBearer(h, tc.token)
		if w.Code != tc.want {
			t.Errorf("MaxTokenSize %d, token of %d bytes: %d, want %d", tc.max, len(tc.token), w.Code, tc.want)
		}
		if tc.want == 401 && !strings.Contains(w.Header().Get("WWW-Authenticate"), classOf(errTokenTooLarge).desc) {
			t.Errorf("MaxTokenSize %d: %q", tc.max, w.Header().Get("WWW-Authenticate"))
		}
	}
}

func TestJWTCacheAndRevocation(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	clock := now
	var mu sync.Mutex
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", func(o *JWTVerifierOptions) {
		o.Clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
		o.CacheTTL = time.Minute
		o.CacheSize = 32
		o.Issuers = append(o.Issuers, TrustedIssuer{Issuer: "https://ec.example.com", Audiences: []string{testAudience}, PublicKeys: []crypto.PublicKey{&k.ec.PublicKey}})
	})
	setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	ctx := context.Background()
	token := signToken(t, `{"alg":"RS256"}`, mustJSON(t, goodClaims(issRSA, now, map[string]any{"exp": now.Add(90 * time.Second).Unix()})), "RS256", k.rsa)
	p1, err := v.Verify(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := v.Verify(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Error("the second verification did not come from the cache")
	}
	if p1.info == nil {
		t.Error("a cached principal is not sealed")
	}
	// Past the TTL, the token is verified again (a new principal).
	setClock(now.Add(61 * time.Second))
	p3, err := v.Verify(ctx, token)
	if err != nil || p3 == p1 {
		t.Fatalf("after the TTL: %v, same principal %v", err, p3 == p1)
	}
	// Past exp, the cached entry does not outlive the token.
	setClock(now.Add(90 * time.Second))
	if _, err := v.Verify(ctx, token); !errors.Is(err, errTokenExpired) {
		t.Fatalf("after exp: %v", err)
	}

	// Revocation works on a cached token at once.
	setClock(now)
	token2 := signToken(t, `{"alg":"RS256"}`, mustJSON(t, goodClaims(issRSA, now, map[string]any{"jti": "to-revoke"})), "RS256", k.rsa)
	checkRevoke(t, v, token2, "revoked token")
	// Revocation by jti covers another token with the same issuer and jti.
	token3 := signToken(t, `{"alg":"RS256","kid":"x"}`, mustJSON(t, goodClaims(issRSA, now, map[string]any{"jti": "to-revoke", "sub": "other"})), "RS256", k.rsa)
	if _, err := v.Verify(ctx, token3); !errors.Is(err, ErrRevoked) {
		t.Fatalf("same jti: %v", err)
	}
	// A forged token revokes nothing.
	forged := signToken(t, `{"alg":"RS256"}`, mustJSON(t, goodClaims(issRSA, now, map[string]any{"jti": "jti-1"})), "RS256", k.rsaAttacker)
	if err := v.Revoke(ctx, forged); !errors.Is(err, errTokenSignature) {
		t.Fatalf("Revoke(forged) = %v", err)
	}
	// A token without jti is revoked by its hash.
	token4 := signToken(t, `{"alg":"RS256"}`, mustJSON(t, goodClaims(issRSA, now, map[string]any{"jti": nil})), "RS256", k.rsa)
	checkRevoke(t, v, token4, "revoked token without jti")

	// An ECDSA signature (r, s) has a twin (r, n-s) that verifies too; a
	// revoked token without jti must not come back as its twin.
	token5 := signToken(t, `{"alg":"ES256"}`, mustJSON(t, goodClaims("https://ec.example.com", now, map[string]any{"jti": nil})), "ES256", k.ec)
	i := strings.LastIndexByte(token5, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(token5[i+1:])
	sTwin := new(big.Int).Sub(k.ec.Curve.Params().N, new(big.Int).SetBytes(sig[32:]))
	twinSig := append(sig[:32:32], sTwin.FillBytes(make([]byte, 32))...)
	twin := token5[:i+1] + base64.RawURLEncoding.EncodeToString(twinSig)
	if _, err := v.Verify(ctx, twin); err != nil {
		t.Fatalf("the twin signature does not verify, so this test shows nothing: %v", err)
	}
	if err := v.Revoke(ctx, token5); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{token5, twin} {
		if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrRevoked) {
			t.Fatalf("revoked ECDSA token or its twin: %v", err)
		}
	}

	// The cache stays within its bound.
	for i := range 500 {
		tok := signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, map[string]any{"jti": fmt.Sprint(i)})), "HS256", k.secret)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for i := range v.cache.shards {
		n += len(v.cache.shards[i].entries)
		if len(v.cache.shards[i].entries) > v.cache.shards[i].max {
			t.Errorf("shard %d holds %d entries, max %d", i, len(v.cache.shards[i].entries), v.cache.shards[i].max)
		}
	}
	if n > 32 {
		t.Errorf("the cache holds %d entries, want at most 32", n)
	}
	// So does the header memo, whatever headers come.
	for i := range 200 {
		tok := signToken(t, fmt.Sprintf(`{"alg":"HS256","kid":"k%d"}`, i), mustJSON(t, goodClaims(issHMAC, now, nil)), "HS256", k.secret)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(v.headers.m); n > headerMemoSize {
		t.Errorf("the header memo holds %d headers", n)
	}
}

// checkRevoke checks that token verifies, revokes it, and checks that it is
// refused as revoked from then on; what names the token in the failure.
func checkRevoke(t *testing.T, v *JWTVerifier, token, what string) {
	t.Helper()
	ctx := context.Background()
	if _, err := v.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	if err := v.Revoke(ctx, token); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("%s: %v", what, err)
	}
}

// failingStore is a store that is down.
type failingStore struct{}

var errStoreDown = errors.New("down")

func (failingStore) Get(context.Context, string) ([]byte, error) { return nil, errStoreDown }

func (failingStore) Set(context.Context, string, []byte, time.Duration) error { return errStoreDown }

func (failingStore) Create(context.Context, string, []byte, time.Duration) error {
	return errStoreDown
}

func (failingStore) Take(context.Context, string) ([]byte, error) { return nil, errStoreDown }

func (failingStore) Delete(context.Context, string) error { return errStoreDown }

func (failingStore) Incr(context.Context, string, time.Duration) (int64, error) {
	return 0, errStoreDown
}

func (failingStore) List(context.Context, string, func(string, []byte) error) error {
	return errStoreDown
}

func TestJWTRevocationStoreDown(t *testing.T) {
	k := testKeys()
	now := time.Now()
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", func(o *JWTVerifierOptions) { o.Store = failingStore{} })
	token := signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, nil)), "HS256", k.secret)
	h := Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, v)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("passed") }))
	w := serveBearer(h, token)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503", w.Code)
	}
	// A hint to retry later, and the RFC 6749 code; never the store's error.
	if ra := w.Header().Get("Retry-After"); ra != "5" {
		t.Errorf("Retry-After = %q, want 5", ra)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "temporarily_unavailable" || strings.Contains(w.Body.String(), errStoreDown.Error()) {
		t.Errorf("body %s (%v)", w.Body, err)
	}
}

// TestJWTAccessTokenType: an issuer with RequireAccessTokenType accepts
// only tokens typed "at+jwt" (RFC 9068 §4), so that its OpenID Connect ID
// tokens, whose aud may well match, are refused; without it, untyped and
// "JWT" tokens pass too. A token typed as some other kind of JWT is refused
// either way.
func TestJWTAccessTokenType(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	// An ID token as an OpenID provider issues it: typ JWT, a nonce, and
	// here an aud that matches this server.
	idToken := mustJSON(t, goodClaims(issRSA, now, map[string]any{"nonce": "n-1", "scope": nil, "roles": nil}))
	claims := mustJSON(t, goodClaims(issRSA, now, nil))
	for _, tc := range []struct {
		name    string
		header  string
		claims  string
		lenient error // without RequireAccessTokenType
		strict  error // with it
	}{
		{"at+jwt", `{"alg":"RS256","typ":"at+jwt"}`, claims, nil, nil},
		{"application/at+jwt", `{"alg":"RS256","typ":"application/AT+JWT"}`, claims, nil, nil},
		{"AT+JWT", `{"alg":"RS256","typ":"AT+JWT"}`, claims, nil, nil},
		{"at+jwt with a space", `{"alg":"RS256","typ":" at+jwt"}`, claims, errTokenType, errTokenType},
		{"JWT", `{"alg":"RS256","typ":"JWT"}`, claims, nil, errTokenType},
		{"untyped", `{"alg":"RS256"}`, claims, nil, errTokenType},
		{"ID token", `{"alg":"RS256","typ":"JWT"}`, idToken, nil, errTokenType},
		{"logout token", `{"alg":"RS256","typ":"logout+jwt"}`, claims, errTokenType, errTokenType},
		{"DPoP proof", `{"alg":"RS256","typ":"dpop+jwt"}`, claims, errTokenType, errTokenType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := signToken(t, tc.header, tc.claims, "RS256", k.rsa)
			for _, strict := range []bool{false, true} {
				v := testVerifier(t, now, "", func(o *JWTVerifierOptions) {
					o.Issuers = o.Issuers[:1]
					o.Issuers[0].RequireAccessTokenType = strict
				})
				want := tc.lenient
				if strict {
					want = tc.strict
				}
				_, err := v.Verify(context.Background(), token)
				if want == nil && err != nil || want != nil && !errors.Is(err, want) {
					t.Errorf("RequireAccessTokenType %v: %v, want %v", strict, err, want)
				}
				if want != nil {
					w := serveBearer(Require(&RequireOptions{Logger: slog.New(slog.DiscardHandler)}, v)(http.NotFoundHandler()), token)
					if w.Code != http.StatusUnauthorized || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error_description="The token is not an access token."`) {
						t.Errorf("RequireAccessTokenType %v: %d %q", strict, w.Code, w.Header().Get("WWW-Authenticate"))
					}
				}
			}
		})
	}
}

// TestJWTAcceptBoundTokens: with AcceptBoundTokens, an issuer's
// sender-constrained tokens pass as bearer tokens (TestJWTBadInput shows
// that they are refused by default).
func TestJWTAcceptBoundTokens(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	token := signToken(t, `{"alg":"RS256"}`, mustJSON(t, goodClaims(issRSA, now, map[string]any{"cnf": map[string]any{"jkt": "x"}})), "RS256", k.rsa)
	v := testVerifier(t, now, "", func(o *JWTVerifierOptions) {
		o.Issuers = o.Issuers[:1]
		o.Issuers[0].AcceptBoundTokens = true
	})
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("bound token with AcceptBoundTokens: %v", err)
	}
}

// checkVerify verifies token with v and fails t unless the outcome is the
// one wanted: accepted for a nil class, else refused with an error of class.
func checkVerify(t *testing.T, v *JWTVerifier, token string, class error) {
	t.Helper()
	_, err := v.Verify(context.Background(), token)
	switch {
	case class == nil && err != nil:
		t.Fatalf("refused: %v", err)
	case class != nil && !errors.Is(err, class):
		t.Fatalf("Verify = %v, want %v", err, class)
	}
}

// TestJWTAmbiguousJSON sends validly signed tokens whose header or
// claims two JSON parsers could read differently. Each must be refused as
// malformed; the control rows, which differ only in not being ambiguous,
// must pass, so that the refusals are the ambiguity's.
func TestJWTAmbiguousJSON(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", nil)
	hs := func(hdr, claims string) string { return signToken(t, hdr, claims, "HS256", k.secret) }
	base := fmt.Sprintf(`"iss":%q,"sub":"alice","aud":%q,"exp":%d`, issHMAC, testAudience, now.Add(time.Hour).Unix())
	tests := []struct {
		name  string
		token string
		class error // nil: accepted
	}{
		{"nested duplicate member", hs(`{"alg":"HS256"}`, `{`+base+`,"realm_access":{"roles":["user"],"roles":["admin"]}}`), errTokenMalformed},
		{"nested duplicate member, escaped", hs(`{"alg":"HS256"}`, `{`+base+`,"realm_access":{"roles":["user"],"r\u006fles":["admin"]}}`), errTokenMalformed},
		{"duplicate member in an object in an array", hs(`{"alg":"HS256"}`, `{`+base+`,"x":[1,{"a":1,"b":[],"a":2}]}`), errTokenMalformed},
		{"duplicate member deep down", hs(`{"alg":"HS256"}`, `{`+base+`,"a":{"b":{"c":[{"d":{"e":1,"e":2}}]}}}`), errTokenMalformed},
		{"nested duplicate header member", hs(`{"alg":"HS256","x":{"a":1,"a":2}}`, `{`+base+`}`), errTokenMalformed},
		{"invalid UTF-8 in a claim", hs(`{"alg":"HS256"}`, `{`+base+`,"name":"alice`+"\xff"+`"}`), errTokenMalformed},
		{"invalid UTF-8 in sub", hs(`{"alg":"HS256"}`, fmt.Sprintf(`{"iss":%q,"sub":"alice`+"\xfe"+`","aud":%q,"exp":%d}`, issHMAC, testAudience, now.Add(time.Hour).Unix())), errTokenMalformed},
		{"invalid UTF-8 in a member name", hs(`{"alg":"HS256"}`, `{`+base+`,"role`+"\xc0"+`":"admin"}`), errTokenMalformed},
		{"invalid UTF-8 in the header", hs(`{"alg":"HS256","x":"`+"\xed\xa0\x80"+`"}`, `{`+base+`}`), errTokenMalformed},
		{"escaped lone high surrogate in sub", hs(`{"alg":"HS256"}`, fmt.Sprintf(`{"iss":%q,"sub":"alice\ud800","aud":%q,"exp":%d}`, issHMAC, testAudience, now.Add(time.Hour).Unix())), errTokenMalformed},
		{"escaped lone low surrogate", hs(`{"alg":"HS256"}`, `{`+base+`,"name":"\udc00x"}`), errTokenMalformed},
		{"escaped reversed surrogates", hs(`{"alg":"HS256"}`, `{`+base+`,"name":"\ude00\ud83d"}`), errTokenMalformed},
		{"escaped high surrogate before a non-surrogate", hs(`{"alg":"HS256"}`, `{`+base+`,"name":"\ud83d\u0041"}`), errTokenMalformed},
		{"escaped surrogate in a member name", hs(`{"alg":"HS256"}`, `{`+base+`,"role\uDBFF":"admin"}`), errTokenMalformed},
		{"escaped surrogate in the header", hs(`{"alg":"HS256","x":"\ud800"}`, `{`+base+`}`), errTokenMalformed},
		{"control: UTF-8 and escapes", hs(`{"alg":"HS256"}`, `{`+base+`,"name":"Zoë \u00eb \ud83d\ude00 \uD83D\uDE00 \\ud800 \"\ud7ff\ue000\uffff 😀"}`), nil},
		{"control: one name in several objects", hs(`{"alg":"HS256","x":{"alg":1}}`, `{`+base+`,"roles":["a"],"realm_access":{"roles":["b"],"x":{"roles":[]}},"l":[{"a":1},{"a":2},[{"a":3}],"a,\"a\":{"]}`), nil},
		{"control: empty objects and arrays", hs(`{"alg":"HS256"}`, `{`+base+`,"a":{},"b":[],"c":[{},[],{"d":{}}]}`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkVerify(t, v, tt.token, tt.class) })
	}
}

// TestJWTNonCanonicalEncoding checks that a token is read in one
// encoding only: a variant of a valid token that decodes to the same bytes
// (line breaks, padding, the standard alphabet, non-zero trailing bits) is
// refused, through Verify as well as through HTTP, so that it cannot make
// a second cache entry or differ from the token an operator revoked.
func TestJWTNonCanonicalEncoding(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", nil)
	// A token whose signature holds both URL-safe characters and ends in
	// a character with two unused bits.
	var token string
	for i := 0; ; i++ {
		token = signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, map[string]any{"jti": fmt.Sprint(i)})), "HS256", k.secret)
		sig := token[strings.LastIndexByte(token, '.')+1:]
		if strings.ContainsAny(sig, "-_") && strings.IndexByte("AQgw", sig[len(sig)-1]) >= 0 {
			break
		}
	}
	dot1, dot2 := strings.IndexByte(token, '.'), strings.LastIndexByte(token, '.')
	sig := token[dot2+1:]
	const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	tests := []struct {
		name  string
		token string
	}{
		{"LF in the signature", token[:dot2+5] + "\n" + token[dot2+5:]},
		{"CRLF in the signature", token[:dot2+5] + "\r\n" + token[dot2+5:]},
		{"trailing LF", token + "\n"},
		{"LF in the claims", token[:dot1+5] + "\n" + token[dot1+5:]},
		{"LF in the header", token[:5] + "\n" + token[5:]},
		{"padded signature", token + "="},
		{"standard alphabet", token[:dot2+1] + strings.NewReplacer("-", "+", "_", "/").Replace(sig)},
		{"non-zero trailing bits", token[:len(token)-1] + string(b64url[strings.IndexByte(b64url, sig[len(sig)-1])+1])},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := v.Verify(ctx, tt.token); !errors.Is(err, errTokenMalformed) {
				t.Errorf("Verify = %v, want %v", err, errTokenMalformed)
			}
			if err := v.Revoke(ctx, tt.token); !errors.Is(err, errTokenMalformed) {
				t.Errorf("Revoke = %v, want %v", err, errTokenMalformed)
			}
		})
	}
	if _, err := v.Verify(ctx, token); err != nil {
		t.Fatalf("the canonical token: %v", err)
	}
}

// TestJWTClaimEdges pins claim checks found sound in review, at their
// edges: the audience's trailing-slash tolerance is not a prefix match, the
// issuer is compared exactly, alg is matched exactly (no case folding or
// trimming), NumericDates must be numbers, and Leeway applies to exp, nbf
// and iat alike.
func TestJWTClaimEdges(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", func(o *JWTVerifierOptions) { o.Leeway = 30 * time.Second })
	claims := func(change map[string]any) string { return mustJSON(t, goodClaims(issHMAC, now, change)) }
	hs := func(hdr string, change map[string]any) string {
		return signToken(t, hdr, claims(change), "HS256", k.secret)
	}
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	tests := []struct {
		name  string
		token string
		class error // nil: accepted
	}{
		{"aud with a trailing slash", hs(`{"alg":"HS256"}`, map[string]any{"aud": testAudience + "/"}), nil},
		{"aud with two trailing slashes", hs(`{"alg":"HS256"}`, map[string]any{"aud": testAudience + "//"}), errTokenAudience},
		{"aud that extends the resource", hs(`{"alg":"HS256"}`, map[string]any{"aud": testAudience + "x"}), errTokenAudience},
		{"aud under the resource", hs(`{"alg":"HS256"}`, map[string]any{"aud": testAudience + "/other"}), errTokenAudience},
		{"aud a prefix of the resource", hs(`{"alg":"HS256"}`, map[string]any{"aud": testAudience[:len(testAudience)-1]}), errTokenAudience},
		{"aud in other case", hs(`{"alg":"HS256"}`, map[string]any{"aud": strings.ToUpper(testAudience)}), errTokenAudience},
		{"aud an empty array", hs(`{"alg":"HS256"}`, map[string]any{"aud": []string{}}), errTokenAudience},
		{"aud an empty string", hs(`{"alg":"HS256"}`, map[string]any{"aud": ""}), errTokenAudience},
		{"aud an array with a number", hs(`{"alg":"HS256"}`, map[string]any{"aud": []any{testAudience, 1}}), errTokenMalformed},
		{"iss with a trailing slash", hs(`{"alg":"HS256"}`, map[string]any{"iss": issHMAC + "/"}), errTokenIssuer},
		{"iss in other case", hs(`{"alg":"HS256"}`, map[string]any{"iss": strings.ToUpper(issHMAC)}), errTokenIssuer},
		{"iss an array", hs(`{"alg":"HS256"}`, map[string]any{"iss": []string{issHMAC}}), errTokenIssuer},
		{"alg with a space", hs(`{"alg":"HS256 "}`, nil), errTokenAlgorithm},
		{"alg in lower case", hs(`{"alg":"hs256"}`, nil), errTokenAlgorithm},
		{"alg NONE", hs(`{"alg":"NONE"}`, nil), errTokenAlgorithm},
		{"alg empty", hs(`{"alg":""}`, nil), errTokenAlgorithm},
		{"alg a number", hs(`{"alg":256}`, nil), errTokenMalformed},
		{"typ with a space", hs(`{"alg":"HS256","typ":"JWT "}`, nil), errTokenType},
		{"exp negative", hs(`{"alg":"HS256"}`, map[string]any{"exp": -1}), errTokenExpired},
		{"exp null", hs(`{"alg":"HS256"}`, map[string]any{"exp": json.RawMessage("null")}), errTokenMalformed},
		{"exp a numeric string", hs(`{"alg":"HS256"}`, map[string]any{"exp": fmt.Sprint(at(time.Hour))}), errTokenMalformed},
		{"exp true", hs(`{"alg":"HS256"}`, map[string]any{"exp": true}), errTokenMalformed},
		{"exp an array", hs(`{"alg":"HS256"}`, map[string]any{"exp": []int64{at(time.Hour)}}), errTokenMalformed},
		{"exp far beyond int64", hs(`{"alg":"HS256"}`, map[string]any{"exp": json.RawMessage("1e300")}), nil},
		{"exp within leeway", hs(`{"alg":"HS256"}`, map[string]any{"exp": at(-29 * time.Second)}), nil},
		{"exp beyond leeway", hs(`{"alg":"HS256"}`, map[string]any{"exp": at(-30 * time.Second)}), errTokenExpired},
		{"nbf within leeway", hs(`{"alg":"HS256"}`, map[string]any{"nbf": at(30 * time.Second)}), nil},
		{"nbf beyond leeway", hs(`{"alg":"HS256"}`, map[string]any{"nbf": at(31 * time.Second)}), errTokenNotYetValid},
		{"nbf a string", hs(`{"alg":"HS256"}`, map[string]any{"nbf": "0"}), errTokenMalformed},
		{"iat within leeway", hs(`{"alg":"HS256"}`, map[string]any{"iat": at(30 * time.Second)}), nil},
		{"iat beyond leeway", hs(`{"alg":"HS256"}`, map[string]any{"iat": at(31 * time.Second)}), errTokenNotYetValid},
		{"iat long ago", hs(`{"alg":"HS256"}`, map[string]any{"iat": 0}), nil},
		{"sub a number", hs(`{"alg":"HS256"}`, map[string]any{"sub": 7}), errTokenMalformed},
		{"sub empty", hs(`{"alg":"HS256"}`, map[string]any{"sub": ""}), errTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkVerify(t, v, tt.token, tt.class) })
	}
}

// TestJWTZeroMemoryStore checks that a MemoryStore declared as a plain
// variable (the exported type invites it) works as a verifier's store,
// instead of panicking on the first Revoke.
func TestJWTZeroMemoryStore(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	var store MemoryStore
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", func(o *JWTVerifierOptions) { o.Store = &store })
	ctx := context.Background()
	token := signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, nil)), "HS256", k.secret)
	if _, err := v.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Revoke panicked: %v", r)
			}
		}()
		for i := range 64 { // enough to reach the periodic clean-up
			if err := store.Set(ctx, fmt.Sprint("other-", i), nil, time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		if err := v.Revoke(ctx, token); err != nil {
			t.Fatal(err)
		}
	}()
	if _, err := v.Verify(ctx, token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after Revoke: %v", err)
	}
}

// TestJWTScopeSplit checks that a scope string is split at spaces
// (U+0020) only, as RFC 6749 §3.3 and RFC 8693 §4.2 define it. Splitting at
// any Unicode white space let one scope an identity provider granted (say a
// parameterised "group:x<NBSP>admin", which it reads as one token) become
// two here, one of them "admin".
func TestJWTScopeSplit(t *testing.T) {
	k := testKeys()
	now := time.Now().Truncate(time.Second)
	v := testVerifier(t, now, "http://127.0.0.1:1/jwks", nil)
	tests := []struct {
		scope string
		want  []string
	}{
		{"read  write ", []string{"read", "write"}},
		{"group:x\u00a0admin", []string{"group:x\u00a0admin"}},
		{"group:x\tadmin read", []string{"group:x\tadmin", "read"}},
		{"group:x\nadmin", []string{"group:x\nadmin"}},
		{"group:x\u2003admin\u3000root", []string{"group:x\u2003admin\u3000root"}},
		{"group:x\u0085admin", []string{"group:x\u0085admin"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.scope), func(t *testing.T) {
			for _, claim := range []string{"scope", "scp"} {
				token := signToken(t, `{"alg":"HS256"}`, mustJSON(t, goodClaims(issHMAC, now, map[string]any{"scope": nil, claim: tt.scope})), "HS256", k.secret)
				p, err := v.Verify(context.Background(), token)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprintf("%q", p.Scopes) != fmt.Sprintf("%q", tt.want) {
					t.Errorf("%s %q: Scopes = %q, want %q", claim, tt.scope, p.Scopes, tt.want)
				}
			}
		})
	}
}

// TestHMACKeyLengthPerAlgorithm: RFC 7518 §3.2 wants an HMAC key at least as
// long as the hash, so a 32-byte secret verifies HS256 but not HS384 or
// HS512, even for a token it did sign.
func TestHMACKeyLengthPerAlgorithm(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		secretLen int
		alg       string
		ok        bool
	}{
		{32, "HS256", true}, {32, "HS384", false}, {32, "HS512", false},
		{48, "HS384", true}, {48, "HS512", false},
		{64, "HS256", true}, {64, "HS384", true}, {64, "HS512", true},
	} {
		secret := bytes.Repeat([]byte{'k'}, tt.secretLen)
		v, err := NewJWTVerifier(JWTVerifierOptions{Issuers: []TrustedIssuer{{Issuer: issHMAC, Audiences: []string{testAudience}, Secret: secret}}})
		if err != nil {
			t.Fatal(err)
		}
		token := signToken(t, `{"alg":"`+tt.alg+`","typ":"JWT"}`, mustJSON(t, goodClaims(issHMAC, now, nil)), tt.alg, secret)
		_, err = v.Verify(context.Background(), token)
		v.Close()
		if tt.ok && err != nil {
			t.Errorf("%d-byte secret, %s: %v", tt.secretLen, tt.alg, err)
		}
		if !tt.ok && !errors.Is(err, errTokenAlgorithm) {
			t.Errorf("%d-byte secret, %s: err = %v, want errTokenAlgorithm", tt.secretLen, tt.alg, err)
		}
	}
}

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
