package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
)

type jwks struct {
	Keys []struct {
		Kid, Alg, Kty, Use, D string
	} `json:"keys"`
}

func (env *testEnv) jwks() jwks {
	env.t.Helper()
	resp, err := httpGet(env.url("/jwks.json"))
	if err != nil {
		env.t.Fatal(err)
	}
	if resp.status != 200 || resp.header.Get("Access-Control-Allow-Origin") != "*" {
		env.t.Fatalf("jwks: %d", resp.status)
	}
	var set jwks
	if err := json.Unmarshal(resp.body, &set); err != nil {
		env.t.Fatal(err)
	}
	return set
}

func (s jwks) kids() []string {
	var out []string
	for _, k := range s.Keys {
		out = append(out, k.Kid)
	}
	return out
}

// ccToken gets a client credentials token for the machine client.
func (env *testEnv) ccToken(scope string) string {
	env.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	resp, m := env.post("/token", form, basicAuth("machine", testSecret))
	if resp.StatusCode != 200 {
		env.t.Fatalf("client credentials: %d %v", resp.StatusCode, m)
	}
	return m["access_token"].(string)
}

func tokenKid(t *testing.T, token string) string {
	t.Helper()
	var hdr struct{ Kid, Alg, Typ string }
	decodeSegment(t, strings.Split(token, ".")[0], &hdr)
	if hdr.Typ != "at+jwt" {
		t.Fatalf("typ %q", hdr.Typ)
	}
	return hdr.Kid
}

func TestJWKSAndRotation(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.KeyRotation = time.Hour })
	set := env.jwks()
	if len(set.Keys) != 2 {
		t.Fatalf("keys at start: %v (want this period's and the next)", set.kids())
	}
	for _, k := range set.Keys {
		if k.Alg != "ES256" || k.Kty != "EC" || k.Use != "sig" || k.D != "" || k.Kid == "" {
			t.Fatalf("key %+v", k)
		}
	}
	tok := env.ccToken("")
	kid1 := tokenKid(t, tok)
	if kid1 != set.Keys[0].Kid && kid1 != set.Keys[1].Kid {
		t.Fatalf("token kid %q not in %v", kid1, set.kids())
	}
	v, err := env.as.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	// One period on, the next key signs; the old one is still published,
	// and a token it signed a moment before the rotation still verifies.
	env.clock.Advance(time.Hour - 2*time.Minute)
	tok = env.ccToken("")
	env.clock.Advance(3 * time.Minute)
	tok2 := env.ccToken("")
	kid2 := tokenKid(t, tok2)
	if kid2 == kid1 {
		t.Fatal("the key did not rotate")
	}
	set = env.jwks()
	if len(set.Keys) != 3 || !strings.Contains(strings.Join(set.kids(), " "), kid1) || !strings.Contains(strings.Join(set.kids(), " "), kid2) {
		t.Fatalf("after rotation: %v, want %s, %s and the next", set.kids(), kid1, kid2)
	}
	for _, tk := range []string{tok, tok2} {
		if _, err := v.Verify(context.Background(), tk); err != nil {
			t.Errorf("token across the rotation: %v", err)
		}
	}
	// Two periods on, the first key is gone.
	env.clock.Advance(time.Hour)
	if set := env.jwks(); strings.Contains(strings.Join(set.kids(), " "), kid1) {
		t.Errorf("key of two periods ago still published: %v", set.kids())
	}
}

func TestSigningKeysPersisted(t *testing.T) {
	env := newEnv(t, nil)
	tok := env.ccToken("")
	// The sealed keys are in the store; no private key shows through.
	found := 0
	for k, v := range snapshot(t, env.store) {
		if strings.HasPrefix(k, "as.key:ES256:") {
			found++
			if !strings.HasPrefix(v, "v1.") || strings.Contains(v, "pkcs8") {
				t.Errorf("%s is not sealed: %.40q", k, v)
			}
		}
	}
	if found != 2 {
		t.Errorf("%d sealed keys in the store, want 2", found)
	}

	// A second server (another replica, or this one after a restart) with
	// the same store and secret uses the same keys.
	env2 := newEnv(t, func(o *Options) {
		o.Store = env.store
		o.Clock = env.clock.Now
		o.Issuer = env.as.issuer
		o.Resources = env.opts.Resources
	})
	if a, b := env.jwks().kids(), env2.jwks().kids(); strings.Join(a, " ") != strings.Join(b, " ") {
		t.Fatalf("replicas publish %v and %v", a, b)
	}
	if p := verify(t, env2, tok); p.Subject != "machine" {
		t.Errorf("subject %q", p.Subject)
	}

	// With another secret the keys do not open: the token endpoint fails
	// closed, and says so in an event.
	env3 := newEnv(t, func(o *Options) {
		o.Store = env.store
		o.Clock = env.clock.Now
		o.Issuer = env.as.issuer
		o.Resources = env.opts.Resources
		o.Secret = []byte(otherSecret)
	})
	resp, m := env3.post("/token", url.Values{"grant_type": {"client_credentials"}}, basicAuth("machine", testSecret))
	if resp.StatusCode != 503 || m["error"] != "temporarily_unavailable" {
		t.Errorf("wrong secret: %d %v", resp.StatusCode, m)
	}
	if len(env3.events.find(mcpauth.EventKeySource, mcpauth.OutcomeFailure)) == 0 {
		t.Error("no key_source event")
	}
	if _, err := env3.as.Verifier(); !errors.Is(err, mcpauth.ErrUnavailable) {
		t.Errorf("verifier with unopenable keys: %v", err)
	}
}

func TestSigningKeysInMemoryWithoutSecret(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.Secret = nil })
	tok := env.ccToken("")
	for k := range snapshot(t, env.store) {
		if strings.HasPrefix(k, "as.key") {
			t.Errorf("key %s stored without a secret", k)
		}
	}
	// Another process on the same store has its own keys: the token does
	// not verify there (this is what "tokens don't survive a restart"
	// means).
	env2 := newEnv(t, func(o *Options) {
		o.Secret = nil
		o.Store = env.store
		o.Issuer = env.as.issuer
		o.Resources = env.opts.Resources
		o.Clock = env.clock.Now
	})
	v, err := env2.as.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, mcpauth.ErrInvalidCredentials) {
		t.Errorf("token of another process: %v", err)
	}
}

func TestEdDSA(t *testing.T) {
	env := newEnv(t, func(o *Options) { o.SigningAlgorithm = "EdDSA" })
	for _, k := range env.jwks().Keys {
		if k.Alg != "EdDSA" || k.Kty != "OKP" {
			t.Fatalf("key %+v", k)
		}
	}
	if p := verify(t, env, env.ccToken("")); p.Subject != "machine" {
		t.Errorf("subject %q", p.Subject)
	}
}
