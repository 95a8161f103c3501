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
	"golang.org/x/oauth2"
)

// codeFor runs an authorization for app and returns the code and its
// verifier.
func (env *testEnv) codeFor(client, redirect string) (code, verifier string) {
	env.t.Helper()
	verifier = oauth2.GenerateVerifier()
	q := env.authorizeQuery()
	q.Set("client_id", client)
	q.Set("redirect_uri", redirect)
	q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(verifier))
	q.Set("resource", env.resource())
	back := env.authorize(env.url("/authorize?"+q.Encode()), "alice", "approve")
	return back.Query().Get("code"), verifier
}

func TestCodeGrantErrors(t *testing.T) {
	env := newEnv(t, nil)
	code, verifier := env.codeFor("app", loopbackRedirect)
	wcode, wverifier := env.codeFor("webapp", "https://web.example/cb")
	form := func(kv ...string) string {
		v := url.Values{"grant_type": {"authorization_code"}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v.Encode()
	}
	good := []string{"code", code, "code_verifier", verifier, "client_id", "app", "redirect_uri", loopbackRedirect}
	with := func(kv ...string) string { return form(append(append([]string{}, good...), kv...)...) }
	other := oauth2.GenerateVerifier()
	// Another code of the same form: the first character changed, to one
	// it is not (a fixed "x" is the code itself one time in 64).
	first := "x"
	if code[0] == 'x' {
		first = "y"
	}
	unknown := first + code[1:]
	runTokenCases(t, env, []tokenCase{
		{name: "wrong verifier", body: with("code_verifier", other), status: 400, code: "invalid_grant"},
		{name: "no verifier", body: with("code_verifier", ""), status: 400, code: "invalid_request"},
		{name: "short verifier", body: with("code_verifier", "abc"), status: 400, code: "invalid_grant"},
		{name: "verifier as challenge", body: with("code_verifier", oauth2.S256ChallengeFromVerifier(verifier)), status: 400, code: "invalid_grant"},
		{name: "wrong redirect uri", body: with("redirect_uri", "http://127.0.0.1:4568/callback"), status: 400, code: "invalid_grant"},
		{name: "no redirect uri", body: with("redirect_uri", ""), status: 400, code: "invalid_grant"},
		{name: "wrong resource", body: with("resource", "https://other.example/mcp"), status: 400, code: "invalid_target"},
		{name: "unknown code", body: with("code", unknown), status: 400, code: "invalid_grant"},
		{name: "no code", body: with("code", ""), status: 400, code: "invalid_request"},
		{name: "code of another client", body: form("code", wcode, "code_verifier", wverifier, "client_id", "app", "redirect_uri", "https://web.example/cb"), status: 400, code: "invalid_grant"},
		{name: "confidential code without secret", body: form("code", wcode, "code_verifier", wverifier, "client_id", "webapp", "redirect_uri", "https://web.example/cb"), status: 401, code: "invalid_client"},
		{name: "unknown client", body: with("client_id", "nobody"), status: 401, code: "invalid_client"},
		{name: "machine client", body: with("client_id", "machine", "client_secret", testSecret), status: 400, code: "unauthorized_client"},
		{name: "duplicate code", body: with() + "&code=" + code, status: 400, code: "invalid_request"},
		{name: "oversized", body: with("x", strings.Repeat("y", MaxBodySize)), status: 400, code: "invalid_request"},
	})
	// After all that, the code still works, once.
	resp, m := env.post("/token", mustValues(t, with()), nil)
	if resp.StatusCode != 200 || m["refresh_token"] == nil {
		t.Fatalf("good exchange: %d %v", resp.StatusCode, m)
	}
	access, refresh := m["access_token"].(string), m["refresh_token"].(string)
	verify(t, env, access)

	// A replay is refused and revokes what the code issued: the access
	// token and the refresh token's family.
	before := snapshot(t, env.store)
	resp, m = env.post("/token", mustValues(t, with()), nil)
	if resp.StatusCode != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", resp.StatusCode, m)
	}
	if got := kinds(diff(before, snapshot(t, env.store))); strings.Join(got, " ") != "+as.family-revoked +revoked -as.refresh" {
		t.Errorf("replay changed %v, want the revocations only", got)
	}
	v, _ := env.as.Verifier()
	if _, err := v.Verify(context.Background(), access); !errors.Is(err, mcpauth.ErrRevoked) {
		t.Errorf("access token after the replay: %v", err)
	}
	resp, m = env.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"app"}}, nil)
	if resp.StatusCode != 400 || m["error"] != "invalid_grant" {
		t.Errorf("refresh after the replay: %d %v", resp.StatusCode, m)
	}
	if len(env.events.find(EventReuseDetected, mcpauth.OutcomeFailure)) != 1 {
		t.Error("no reuse event")
	}
}

func mustValues(t *testing.T, s string) url.Values {
	v, err := url.ParseQuery(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCodeExpires(t *testing.T) {
	env := newEnv(t, nil)
	code, verifier := env.codeFor("app", loopbackRedirect)
	env.clock.Advance(DefaultCodeTTL + time.Second)
	body := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "client_id": {"app"}, "redirect_uri": {loopbackRedirect}}.Encode()
	runTokenCases(t, env, []tokenCase{{name: "expired code", body: body, status: 400, code: "invalid_grant"}})
}

// A code whose record has no challenge (which /authorize never makes) is
// refused whatever verifier comes with it.
func TestCodeWithoutChallengeRefused(t *testing.T) {
	env := newEnv(t, nil)
	rec, _ := json.Marshal(codeRecord{ClientID: "app", RedirectURI: loopbackRedirect, RedirectGiven: true, Resource: env.resource(), Subject: "alice", Expires: env.clock.Now().Add(time.Minute).UnixNano()})
	if err := env.store.Set(context.Background(), hashKey(keyCode, "planted"), rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	body := url.Values{"grant_type": {"authorization_code"}, "code": {"planted"}, "code_verifier": {oauth2.GenerateVerifier()}, "client_id": {"app"}, "redirect_uri": {loopbackRedirect}}.Encode()
	runTokenCases(t, env, []tokenCase{{name: "no challenge", body: body, status: 400, code: "invalid_grant"}})
}

// Codes and refresh tokens are stored only as hashes.
func TestSecretsStoredAsHashes(t *testing.T) {
	env := newEnv(t, nil)
	code, verifier := env.codeFor("app", loopbackRedirect)
	_, m := env.post("/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "client_id": {"app"}, "redirect_uri": {loopbackRedirect}}, nil)
	refresh, access := m["refresh_token"].(string), m["access_token"].(string)
	for k, v := range snapshot(t, env.store) {
		for _, secret := range []string{code, verifier, refresh, access, testSecret, testPassword} {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				t.Errorf("%s holds a secret", k)
			}
		}
		kind, id, _ := strings.Cut(k, ":")
		switch kind {
		case keyCode, keyCodeUsed, keyRefresh, keyRefreshUsed, keyTransaction:
			if len(id) != 64 {
				t.Errorf("%s is not kind:sha256hex", k)
			}
		}
	}
}
