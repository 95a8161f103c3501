package authserver

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
)

func withLockout(t *testing.T, lo mcpauth.LockoutOptions) func(o *Options) {
	return func(o *Options) {
		lo.Events = o.Events
		l, err := mcpauth.NewLockout(&lo)
		if err != nil {
			t.Fatal(err)
		}
		o.Lockout = l
	}
}

// TestTokenEndpointLockout checks that wrong secrets lock a client out at
// the address they came from, its right secret included, while another
// client goes on; and that enough failures lock the address out.
func TestTokenEndpointLockout(t *testing.T) {
	env := newEnv(t, withLockout(t, mcpauth.LockoutOptions{CredentialFailures: 3, SourceFailures: 8}))
	cc := url.Values{"grant_type": {"client_credentials"}}
	for i := range 3 {
		if resp, body := env.post("/token", cc, basicAuth("machine", testSecret+"x")); resp.StatusCode != 401 || body["error"] != "invalid_client" {
			t.Fatalf("wrong secret %d: %d %v", i, resp.StatusCode, body)
		}
	}
	resp, body := env.post("/token", cc, basicAuth("machine", testSecret))
	if resp.StatusCode != http.StatusTooManyRequests || body["error"] != "temporarily_unavailable" || resp.Header.Get("Retry-After") != "60" {
		t.Fatalf("locked-out client, right secret: %d %v Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if _, ok := body["access_token"]; ok {
		t.Fatal("a token for a locked-out client")
	}
	if resp, body := env.post("/token", cc, basicAuth("auditor", otherSecret)); resp.StatusCode != 200 {
		t.Fatalf("another client: %d %v", resp.StatusCode, body)
	}
	for i := range 5 {
		env.post("/token", cc, basicAuth("nobody-"+strconv.Itoa(i), "guess"))
	}
	if resp, _ := env.post("/token", cc, basicAuth("auditor", otherSecret)); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("locked-out address: %d, want 429", resp.StatusCode)
	}
	if n := len(env.events.find(mcpauth.EventLockout, mcpauth.OutcomeDenied)); n != 2 {
		t.Fatalf("%d lockout events, want 2 (the client, the address)", n)
	}
}

// TestLoginLockout checks that wrong passwords for one username, however
// spelt, lock it out on the login form at that address, the right password
// included, across authorization requests.
func TestLoginLockout(t *testing.T) {
	env := newEnv(t, withLockout(t, mcpauth.LockoutOptions{CredentialFailures: 3}))
	login := func(user, password string) *page {
		b := newBrowser(t)
		p := b.get(env.url("/authorize?" + env.authorizeQuery().Encode()))
		return b.login(env.srv.URL, p, user, password)
	}
	for _, user := range []string{"alice", "Alice", " ALICE "} {
		if p := login(user, "wrong"); p.status != http.StatusUnauthorized {
			t.Fatalf("%q: %d", user, p.status)
		}
	}
	p := login("alice", testPassword)
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" || strings.Contains(p.body, "Approve") {
		t.Fatalf("locked-out username, right password: %d %.300s", p.status, p.body)
	}
	if p := login("nobody", "wrong"); p.status != http.StatusUnauthorized {
		t.Fatalf("another username: %d, want 401", p.status)
	}
}
