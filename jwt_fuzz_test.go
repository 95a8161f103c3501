package mcpauth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzJWTVerify feeds arbitrary tokens to the whole parsing path (size
// check, segments, base64, header, claims, algorithm and key choice,
// signature, claim checks). No input may panic; only the seeds that are
// valid tokens may pass, since the fuzzer cannot sign; every failure must be
// an invalid-credentials class, and no error text may contain the token.
func FuzzJWTVerify(f *testing.F) {
	k := testKeys()
	now := time.Unix(1_800_000_000, 0)
	v := testVerifier(f, now, "http://127.0.0.1:1/jwks", func(o *JWTVerifierOptions) {
		o.Issuers = o.Issuers[:2] // no JWKS: no network in the fuzzer
		o.Leeway = time.Minute
	})
	valid := map[string]bool{}
	for _, tok := range []string{
		signToken(f, `{"alg":"RS256","typ":"at+jwt","kid":"k"}`, mustJSON(f, goodClaims(issRSA, now, nil)), "RS256", k.rsa),
		signToken(f, `{"alg":"PS256"}`, mustJSON(f, goodClaims(issRSA, now, map[string]any{"aud": []string{"x", testAudience}})), "PS256", k.rsa),
		signToken(f, `{"alg":"HS256"}`, mustJSON(f, goodClaims(issHMAC, now, map[string]any{"realm_access": map[string]any{"roles": []string{"a"}}})), "HS256", k.secret),
		signToken(f, `{"alg":"HS512","typ":"JWT"}`, mustJSON(f, goodClaims(issHMAC, now, map[string]any{"nbf": now.Unix(), "scp": []string{"a"}})), "HS512", k.secret),
	} {
		valid[tok] = true
		f.Add(tok)
		f.Add(tok[:len(tok)/2])
		f.Add(strings.Replace(tok, ".", "..", 1))
		f.Add(tok + "A")
	}
	for _, seed := range []string{
		"", ".", "..", "a.b.c", "a.b.", "eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwczovL2htYWMuZXhhbXBsZS5jb20iLCJzdWIiOiJhIiwic3ViIjoiYiJ9.AAAA",
		"eyJhbGciOiJIUzI1NiIsImNyaXQiOlsieCJdfQ.e30.AAAA",
		"eyJhbGciOiJIUzI1NiJ9.W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW11dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV0.AAAA",
		"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjFlOTk5OTk5fQ.AAAA",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.verify(token, now, true)
		if err == nil {
			if !valid[token] {
				t.Fatalf("an unsigned input passed: %q", token)
			}
			if p.principal.Subject == "" {
				t.Fatal("a principal without a subject")
			}
			return
		}
		if !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("error %v is not an invalid-credentials class", err)
		}
		if len(token) > 8 && strings.Contains(err.Error(), token) {
			t.Fatal("the error text holds the token")
		}
		// The cached path must agree.
		if _, err2 := v.Verify(context.Background(), token); err2 == nil {
			t.Fatalf("Verify accepted what verify refused: %q", token)
		}
	})
}
