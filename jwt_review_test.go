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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

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

// TestJWTReviewAmbiguousJSON sends validly signed tokens whose header or
// claims two JSON parsers could read differently. Each must be refused as
// malformed; the control rows, which differ only in not being ambiguous,
// must pass, so that the refusals are the ambiguity's.
func TestJWTReviewAmbiguousJSON(t *testing.T) {
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

// TestJWTReviewNonCanonicalEncoding checks that a token is read in one
// encoding only: a variant of a valid token that decodes to the same bytes
// (line breaks, padding, the standard alphabet, non-zero trailing bits) is
// refused, through Verify as well as through HTTP, so that it cannot make
// a second cache entry or differ from the token an operator revoked.
func TestJWTReviewNonCanonicalEncoding(t *testing.T) {
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

// TestJWTReviewBrokenKeys checks that a key that cannot work (a typed nil, a
// point that is missing or off its curve) is a configuration error from the
// constructor, not a panic at start-up or, worse, on each request.
func TestJWTReviewBrokenKeys(t *testing.T) {
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

// TestJWTReviewMintExtra checks that TokenClaims.Extra cannot grant what
// TokenClaims says explicitly: with the verifier's default claim mapping,
// an Extra "scp", "permissions", "role" or "azp" would add scopes, roles or
// a client to the principal behind the Scopes, Roles and ClientID fields.
func TestJWTReviewMintExtra(t *testing.T) {
	k := testKeys()
	iss, err := NewJWTIssuer(JWTIssuerOptions{Issuer: "https://as.example.com", Key: k.ec, Audience: []string{testAudience}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewJWTVerifier(JWTVerifierOptions{Issuers: []TrustedIssuer{iss.TrustedIssuer()}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, name := range []string{"scp", "permissions", "role", "azp", "scope", "roles", "client_id", "sub", "iss", "aud", "exp", "nbf", "iat", "jti"} {
		t.Run(name, func(t *testing.T) {
			tok, err := iss.Mint(TokenClaims{Subject: "bob", Scopes: []string{"read"}, Extra: map[string]any{name: []string{"admin"}}})
			if err == nil {
				p, err := v.Verify(context.Background(), tok)
				t.Fatalf("Mint accepted Extra[%q]; Verify = %v, %+v", name, err, p)
			}
		})
	}
	// Other claims pass through.
	tok, err := iss.Mint(TokenClaims{Subject: "bob", Extra: map[string]any{"tenant": "t1", "groups": []string{"g"}}})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(context.Background(), tok); err != nil || p.Claims["tenant"] != "t1" || len(p.Scopes)+len(p.Roles) != 0 {
		t.Fatalf("Verify = %v, %+v", err, p)
	}
}

// TestJWTReviewJWKSURLNotLogged checks that a failed JWKS fetch is logged
// without the secrets a JWKS URL can carry (a password, an API key in the
// query), but with enough of the URL to find the endpoint.
func TestJWTReviewJWKSURLNotLogged(t *testing.T) {
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

// TestJWTReviewJWKSKeys serves a JWKS holding keys that must never verify a
// token (an encryption key by use or by key_ops, an HMAC key, a short RSA
// key, a key whose alg or curve differs from the token's) next to good ones,
// and checks each token against it, with and without a kid.
func TestJWTReviewJWKSKeys(t *testing.T) {
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

// TestJWTReviewClaimEdges pins claim checks found sound in review, at their
// edges: the audience's trailing-slash tolerance is not a prefix match, the
// issuer is compared exactly, alg is matched exactly (no case folding or
// trimming), NumericDates must be numbers, and Leeway applies to exp, nbf
// and iat alike.
func TestJWTReviewClaimEdges(t *testing.T) {
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

// TestJWTReviewJWKSOutage checks, through Require, that once a JWKS that
// served keys goes down, a token whose kid the fetched set lacks gets 503
// (never a pass, never a 401 that tells the client its token is bad), that
// a known kid keeps working, and that neither the response nor the audit
// log holds the token or the fetch's error text.
func TestJWTReviewJWKSOutage(t *testing.T) {
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

// TestJWTReviewScopeSplit checks that a scope string is split at spaces
// (U+0020) only, as RFC 6749 §3.3 and RFC 8693 §4.2 define it. Splitting at
// any Unicode white space let one scope an identity provider granted (say a
// parameterised "group:x<NBSP>admin", which it reads as one token) become
// two here, one of them "admin".
func TestJWTReviewScopeSplit(t *testing.T) {
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
