package mcpauth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
)

// The MCP server's credentials at the fake authorization server. The secret
// has characters that client_secret_basic must form-encode (RFC 6749
// §2.3.1) before base64.
const (
	testClientID     = "mcp server"
	testClientSecret = "s3cr:t&+/é"
	testResource     = "https://mcp.example.com/mcp"
)

var quietLogger = slog.New(slog.DiscardHandler)

// fakeAS is an authorization server for the resource side to discover and
// ask: RFC 8414 / OpenID metadata at chosen paths, a JWKS, an RFC 7662
// introspection endpoint with client_secret_basic, and (for go-sdk's OAuth
// client) a token endpoint redeeming the codes its fetcher hands out.
type fakeAS struct {
	t      testing.TB
	srv    *httptest.Server
	issuer string
	jwt    *mcpauth.JWTIssuer

	mu       sync.Mutex
	metaAt   []string       // the paths that serve the metadata
	meta     map[string]any // the metadata document
	tokens   map[string]map[string]any
	codes    map[string]codeGrant
	requests []seenRequest

	metaStatus       atomic.Int64 // non-zero: the metadata paths answer with it
	introspectStatus atomic.Int64 // non-zero: introspection answers with it
	introspectBody   atomic.Pointer[string]
	introspections   atomic.Int64
	gate             chan struct{} // non-nil: introspection waits for it
}

type seenRequest struct {
	path, auth, body string
}

type codeGrant struct {
	challenge, scope, resource string
}

// newFakeAS starts an authorization server whose issuer is its URL plus
// issuerPath ("" or "/tenant1"), serving RFC 8414 metadata at the
// path-inserted URL.
func newFakeAS(t testing.TB, issuerPath string) *fakeAS {
	a := &fakeAS{t: t, tokens: map[string]map[string]any{}, codes: map[string]codeGrant{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	a.issuer = a.srv.URL + issuerPath
	a.metaAt = []string{"/.well-known/oauth-authorization-server" + issuerPath}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if a.jwt, err = mcpauth.NewJWTIssuer(mcpauth.JWTIssuerOptions{Issuer: a.issuer, Key: key}); err != nil {
		t.Fatal(err)
	}
	a.meta = map[string]any{
		"issuer":                                        a.issuer,
		"authorization_endpoint":                        a.srv.URL + "/authorize",
		"token_endpoint":                                a.srv.URL + "/token",
		"jwks_uri":                                      a.srv.URL + "/jwks",
		"introspection_endpoint":                        a.srv.URL + "/introspect",
		"response_types_supported":                      []string{"code"},
		"grant_types_supported":                         []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":              []string{"S256"},
		"token_endpoint_auth_methods_supported":         []string{"client_secret_basic"},
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic"},
		"scopes_supported":                              []string{"mcp:tools", "mcp:write", "offline_access"},
	}
	return a
}

// setMeta changes the metadata document: a nil value deletes the member.
func (a *fakeAS) setMeta(change map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range change {
		if v == nil {
			delete(a.meta, k)
		} else {
			a.meta[k] = v
		}
	}
}

func (a *fakeAS) serveMetaAt(paths ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.metaAt = paths
}

// seen returns the requests the server received.
func (a *fakeAS) seen() []seenRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

func (a *fakeAS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.requests = append(a.requests, seenRequest{r.URL.Path, r.Header.Get("Authorization"), string(body)})
	isMeta := slices.Contains(a.metaAt, r.URL.Path)
	meta, _ := json.Marshal(a.meta)
	a.mu.Unlock()
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	switch {
	case isMeta:
		if s := a.metaStatus.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(meta)
	case r.URL.Path == "/jwks":
		jwks, err := a.jwt.JWKS()
		if err != nil {
			a.t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	case r.URL.Path == "/introspect":
		a.introspect(w, r)
	case r.URL.Path == "/token":
		a.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (a *fakeAS) introspect(w http.ResponseWriter, r *http.Request) {
	a.introspections.Add(1)
	if a.gate != nil {
		<-a.gate
	}
	if s := a.introspectStatus.Load(); s != 0 {
		w.WriteHeader(int(s))
		return
	}
	if b := a.introspectBody.Load(); b != nil {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, *b)
		return
	}
	user, pass, ok := r.BasicAuth()
	id, _ := url.QueryUnescape(user)
	secret, _ := url.QueryUnescape(pass)
	if r.Method != http.MethodPost || !ok || id != testClientID || secret != testClientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token_type_hint") != "access_token" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	answer, ok := a.tokens[r.PostForm.Get("token")]
	a.mu.Unlock()
	if !ok {
		answer = map[string]any{"active": false}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// token redeems a code handed out by fetchCode: PKCE S256 checked, the token
// minted for the resource and scopes of the authorization request.
func (a *fakeAS) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	g, ok := a.codes[r.PostForm.Get("code")]
	delete(a.codes, r.PostForm.Get("code"))
	a.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge || r.PostForm.Get("resource") != g.resource {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
		return
	}
	tok, err := a.jwt.Mint(mcpauth.TokenClaims{Subject: "alice", Audience: []string{g.resource}, Scopes: strings.Fields(g.scope), ClientID: "mcp-client"})
	if err != nil {
		a.t.Error(err)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600, "scope": g.scope})
}

// fetchCode plays the user who approves an authorization request: it
// records the request and returns a code for it.
func (a *fakeAS) fetchCode(authURL string) (code, state string, q url.Values) {
	u, err := url.Parse(authURL)
	if err != nil {
		a.t.Fatal(err)
	}
	q = u.Query()
	code = rand.Text()
	a.mu.Lock()
	a.codes[code] = codeGrant{q.Get("code_challenge"), q.Get("scope"), q.Get("resource")}
	a.mu.Unlock()
	return code, q.Get("state"), q
}

// activeClaims is the introspection answer for a good token, changed by
// change (a nil value deletes the member).
func (a *fakeAS) activeClaims(now time.Time, change map[string]any) map[string]any {
	m := map[string]any{
		"active":     true,
		"iss":        a.issuer,
		"sub":        "alice",
		"aud":        testResource,
		"client_id":  "client-1",
		"scope":      "mcp:tools mcp:read",
		"roles":      []string{"admin"},
		"exp":        now.Add(time.Hour).Unix(),
		"iat":        now.Unix(),
		"jti":        "jti-" + rand.Text()[:8],
		"token_type": "Bearer",
	}
	for k, v := range change {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// opaque returns a new opaque token whose introspection answers claims.
func (a *fakeAS) opaque(claims map[string]any) string {
	tok := "op_" + rand.Text()
	a.mu.Lock()
	a.tokens[tok] = maps.Clone(claims)
	a.mu.Unlock()
	return tok
}

// mint returns a JWT access token of the server for aud.
func (a *fakeAS) mint(aud ...string) string {
	tok, err := a.jwt.Mint(mcpauth.TokenClaims{Subject: "alice", Audience: aud, ClientID: "client-1", Scopes: []string{"mcp:tools"}, Roles: []string{"admin"}})
	if err != nil {
		a.t.Fatal(err)
	}
	return tok
}

func newTestResource(t testing.TB, resource string, issuers ...string) *mcpauth.ProtectedResource {
	t.Helper()
	pr, err := mcpauth.NewProtectedResource(mcpauth.ProtectedResourceOptions{
		Resource:             resource,
		AuthorizationServers: issuers,
		ScopesSupported:      []string{"mcp:tools"},
		ResourceName:         "Test MCP server",
	})
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// newTestOAuthVerifier returns a verifier of a's tokens for pr, with
// introspection credentials, changed by change.
func newTestOAuthVerifier(t testing.TB, a *fakeAS, pr *mcpauth.ProtectedResource, change func(*mcpauth.OAuthVerifierOptions)) *mcpauth.OAuthVerifier {
	t.Helper()
	opts := mcpauth.OAuthVerifierOptions{Issuer: a.issuer, Resource: pr, ClientID: testClientID, ClientSecret: testClientSecret, Logger: quietLogger}
	if change != nil {
		change(&opts)
	}
	v, err := mcpauth.NewOAuthVerifier(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// testClock is a clock a test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// eventLog is an EventSink that keeps what it receives.
type eventLog struct {
	mu     sync.Mutex
	events []mcpauth.Event
}

func (l *eventLog) Record(_ context.Context, e mcpauth.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []mcpauth.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// serveToken sends a POST with token as a bearer token through h.
func serveToken(h http.Handler, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{}`))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// principalHandler answers 200 with the request's principal as JSON.
var principalHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p := mcpauth.PrincipalFromHTTPRequest(r)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"subject": p.Subject, "method": p.Method, "issuer": p.Issuer, "client_id": p.ClientID,
		"scopes": p.Scopes, "roles": p.Roles, "key_id": p.KeyID, "user_id": p.UserID(), "expiry": p.Expiry.Unix(),
	})
})

// noCredentials finds no credentials in any request.
var noCredentials = mcpauth.AuthenticatorFunc(func(*http.Request) (*mcpauth.Principal, error) {
	return nil, mcpauth.ErrNoCredentials
})
