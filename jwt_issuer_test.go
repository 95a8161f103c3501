package mcpauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestJWTIssuerMintExtra checks that TokenClaims.Extra cannot grant what
// TokenClaims says explicitly: with the verifier's default claim mapping,
// an Extra "scp", "permissions", "role" or "azp" would add scopes, roles or
// a client to the principal behind the Scopes, Roles and ClientID fields.
func TestJWTIssuerMintExtra(t *testing.T) {
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

func TestJWTIssuerRoundTrip(t *testing.T) {
	k := testKeys()
	for _, key := range []any{k.secret, k.ec, k.ed} {
		iss, err := NewJWTIssuer(JWTIssuerOptions{Issuer: "https://as.example.com", Key: key, Audience: []string{testAudience}})
		if err != nil {
			t.Fatal(err)
		}
		t.Run(iss.method.Alg(), func(t *testing.T) {
			tok, err := iss.Mint(TokenClaims{Subject: "svc", ClientID: "c", Scopes: []string{"a", "b"}, Roles: []string{"r"}, Extra: map[string]any{"tenant": "t1"}})
			if err != nil {
				t.Fatal(err)
			}
			ti := iss.TrustedIssuer()
			ti.Method = MethodOAuth
			v, err := NewJWTVerifier(JWTVerifierOptions{Issuers: []TrustedIssuer{ti}})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			p, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if p.Subject != "svc" || p.ClientID != "c" || fmt.Sprint(p.Scopes, p.Roles) != "[a b] [r]" || p.Claims["tenant"] != "t1" || p.Method != MethodOAuth {
				t.Errorf("principal = %+v", p)
			}
			if iss.kid != "" && p.KeyID != iss.kid {
				t.Errorf("KeyID = %q, want the kid %q", p.KeyID, iss.kid)
			}
			if d := p.Expiry.Sub(time.Now()); d < 59*time.Minute || d > time.Hour {
				t.Errorf("expiry in %v, want an hour", d)
			}
			// Header: at+jwt, the issuer's alg and kid.
			var hdr map[string]string
			raw, _ := base64.RawURLEncoding.DecodeString(tok[:strings.IndexByte(tok, '.')])
			json.Unmarshal(raw, &hdr)
			if hdr["typ"] != "at+jwt" || hdr["alg"] != iss.method.Alg() || hdr["kid"] != iss.kid {
				t.Errorf("header = %v", hdr)
			}
			// Two tokens differ in jti.
			tok2, _ := iss.Mint(TokenClaims{Subject: "svc"})
			p2, err := v.Verify(context.Background(), tok2)
			if err != nil || p2.Claims["jti"] == p.Claims["jti"] {
				t.Errorf("second token: %v, jti %v", err, p2.Claims["jti"])
			}
			if _, err := iss.Mint(TokenClaims{Subject: "x", Extra: map[string]any{"sub": "root"}}); err == nil {
				t.Error("Extra replaced sub")
			}
		})
		// The JWKS of an asymmetric issuer serves a JWKS verifier.
		if iss.PublicKey() == nil {
			if _, err := iss.JWKS(); err == nil {
				t.Error("an HMAC issuer published a JWKS")
			}
			continue
		}
		jwks, err := iss.JWKS()
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) }))
		v, err := NewJWTVerifier(JWTVerifierOptions{Issuers: []TrustedIssuer{{Issuer: iss.issuer, Audiences: []string{testAudience}, JWKSURL: srv.URL}}})
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := iss.Mint(TokenClaims{Subject: "svc"})
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("%s via JWKS: %v", iss.method.Alg(), err)
		}
		v.Close()
		srv.Close()
	}
	for _, key := range []any{nil, []byte("short"), k.rsa, "a string secret of more than 32 bytes...."} {
		if _, err := NewJWTIssuer(JWTIssuerOptions{Issuer: "i", Key: key}); err == nil {
			t.Errorf("NewJWTIssuer accepted a %T key", key)
		}
	}
}
