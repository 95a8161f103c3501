package mcpauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// TestProtectedResourceMetadata serves the metadata document and checks it
// at both well-known paths, for every method, whatever the Host header says.
func TestProtectedResourceMetadata(t *testing.T) {
	pr := newTestResource(t, testResource, "https://auth.example.com", "https://auth2.example.com/tenant")
	want := `{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com","https://auth2.example.com/tenant"],"scopes_supported":["mcp:tools"],"bearer_methods_supported":["header"],"resource_name":"Test MCP server"}` + "\n"
	const inserted, root = "/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"
	tests := []struct {
		name, method, path, host string
		status                   int
		body                     string
		headers                  map[string]string
	}{
		{"GET path-inserted", http.MethodGet, inserted, "mcp.example.com", 200, want, map[string]string{"Access-Control-Allow-Origin": "*", "Content-Type": "application/json"}},
		{"GET root", http.MethodGet, root, "mcp.example.com", 200, want, map[string]string{"Access-Control-Allow-Origin": "*", "Content-Type": "application/json"}},
		{"Host header ignored", http.MethodGet, inserted, "evil.example", 200, want, nil},
		{"HEAD", http.MethodHead, inserted, "mcp.example.com", 200, "", map[string]string{"Content-Length": strconv.Itoa(len(want)), "Access-Control-Allow-Origin": "*"}},
		{"OPTIONS preflight", http.MethodOptions, root, "mcp.example.com", 204, "", map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
			"Access-Control-Allow-Headers": "Content-Type, Mcp-Protocol-Version",
		}},
		{"POST", http.MethodPost, inserted, "mcp.example.com", 405, "", map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
		{"DELETE", http.MethodDelete, root, "mcp.example.com", 405, "", map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
		{"another resource's path", http.MethodGet, "/.well-known/oauth-protected-resource/other", "mcp.example.com", 404, "", nil},
		{"trailing slash", http.MethodGet, inserted + "/", "mcp.example.com", 404, "", nil},
	}
	mux := http.NewServeMux()
	mux.Handle("/.well-known/oauth-protected-resource/", pr)
	mux.Handle("/.well-known/oauth-protected-resource", pr)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			if tt.method == http.MethodOptions {
				req.Header.Set("Origin", "https://app.example")
				req.Header.Set("Access-Control-Request-Method", "GET")
				req.Header.Set("Access-Control-Request-Headers", "mcp-protocol-version")
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 200 && body.String() != tt.body {
				t.Errorf("body\n%s\nwant\n%s", body.String(), tt.body)
			}
			for k, v := range tt.headers {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	// go-sdk's client reads it and finds its own resource in it.
	got, err := oauthex.GetProtectedResourceMetadata(context.Background(), srv.URL+inserted, testResource, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, pr.Metadata()) {
		t.Errorf("go-sdk read %+v, want %+v", got, pr.Metadata())
	}
}

// TestProtectedResourceMetadataURL checks the path insertion of RFC 9728
// §3.1.
func TestProtectedResourceMetadataURL(t *testing.T) {
	for _, tt := range []struct{ resource, want string }{
		{"https://mcp.example.com/mcp", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"},
		{"https://mcp.example.com/public/mcp", "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp"},
		{"https://mcp.example.com", "https://mcp.example.com/.well-known/oauth-protected-resource"},
		{"https://mcp.example.com/", "https://mcp.example.com/.well-known/oauth-protected-resource"},
		{"https://mcp.example.com:8443/mcp/", "https://mcp.example.com:8443/.well-known/oauth-protected-resource/mcp/"},
		{"http://127.0.0.1:8080/mcp", "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"},
		{"http://[::1]:8080/mcp", "http://[::1]:8080/.well-known/oauth-protected-resource/mcp"},
		{"http://localhost/mcp", "http://localhost/.well-known/oauth-protected-resource/mcp"},
	} {
		pr := newTestResource(t, tt.resource, "https://auth.example.com")
		if got := pr.MetadataURL(); got != tt.want {
			t.Errorf("%s: MetadataURL() = %q, want %q", tt.resource, got, tt.want)
		}
		if pr.Resource() != tt.resource {
			t.Errorf("Resource() = %q, want %q", pr.Resource(), tt.resource)
		}
	}
}

// TestNewProtectedResourceRefusesBadConfig checks that every configuration a
// client could not use, or that breaks a rule of the spec, fails at start-up.
func TestNewProtectedResourceRefusesBadConfig(t *testing.T) {
	good := mcpauth.ProtectedResourceOptions{Resource: testResource, AuthorizationServers: []string{"https://auth.example.com"}}
	tests := []struct {
		name   string
		change func(*mcpauth.ProtectedResourceOptions)
	}{
		{"no resource", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "" }},
		{"no scheme", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "mcp.example.com/mcp" }},
		{"http, not loopback", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "http://mcp.example.com/mcp" }},
		{"another scheme", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "ftp://mcp.example.com/mcp" }},
		{"fragment", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = testResource + "#frag" }},
		{"empty fragment", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = testResource + "#" }},
		{"query", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = testResource + "?tenant=a" }},
		{"empty query", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = testResource + "?" }},
		{"uppercase host", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "https://MCP.example.com/mcp" }},
		{"uppercase scheme", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "HTTPS://mcp.example.com/mcp" }},
		{"default port", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "https://mcp.example.com:443/mcp" }},
		{"empty port", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "https://mcp.example.com:/mcp" }},
		{"user info", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "https://user@mcp.example.com/mcp" }},
		{"dot segment", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "https://mcp.example.com/a/../mcp" }},
		{"odd escape", func(o *mcpauth.ProtectedResourceOptions) { o.Resource = "https://mcp.example.com/%6dcp" }},
		{"no authorization server", func(o *mcpauth.ProtectedResourceOptions) { o.AuthorizationServers = nil }},
		{"authorization server over http", func(o *mcpauth.ProtectedResourceOptions) {
			o.AuthorizationServers = []string{"http://auth.example.com"}
		}},
		{"authorization server with a query", func(o *mcpauth.ProtectedResourceOptions) {
			o.AuthorizationServers = []string{"https://auth.example.com?x=1"}
		}},
		{"authorization server with a fragment", func(o *mcpauth.ProtectedResourceOptions) {
			o.AuthorizationServers = []string{"https://auth.example.com#x"}
		}},
		{"javascript authorization server", func(o *mcpauth.ProtectedResourceOptions) { o.AuthorizationServers = []string{"javascript:alert(1)"} }},
		{"authorization server twice", func(o *mcpauth.ProtectedResourceOptions) {
			o.AuthorizationServers = []string{"https://auth.example.com", "https://auth.example.com"}
		}},
		{"offline_access supported", func(o *mcpauth.ProtectedResourceOptions) { o.ScopesSupported = []string{"mcp:tools", "offline_access"} }},
		{"offline_access in challenges", func(o *mcpauth.ProtectedResourceOptions) { o.ChallengeScopes = []string{"offline_access"} }},
		{"scope with a space", func(o *mcpauth.ProtectedResourceOptions) { o.ScopesSupported = []string{"mcp tools"} }},
		{"scope with a quote", func(o *mcpauth.ProtectedResourceOptions) { o.ChallengeScopes = []string{`mcp"x`} }},
		{"empty scope", func(o *mcpauth.ProtectedResourceOptions) { o.ScopesSupported = []string{""} }},
		{"scope twice", func(o *mcpauth.ProtectedResourceOptions) { o.ScopesSupported = []string{"a", "a"} }},
		{"name with a line break", func(o *mcpauth.ProtectedResourceOptions) { o.ResourceName = "a\nb" }},
		{"javascript documentation", func(o *mcpauth.ProtectedResourceOptions) { o.ResourceDocumentation = "javascript:alert(1)" }},
	}
	if _, err := mcpauth.NewProtectedResource(good); err != nil {
		t.Fatalf("good configuration refused: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.change(&o)
			pr, err := mcpauth.NewProtectedResource(o)
			if err == nil {
				t.Fatalf("accepted: %s", pr.MetadataURL())
			}
			if !strings.HasPrefix(err.Error(), "mcpauth: ") {
				t.Errorf("error %q does not start with mcpauth:", err)
			}
		})
	}
}

// TestProtectedResourceCopiesSlices checks that the caller's slices can
// change after the constructor returns, and Metadata's copy too.
func TestProtectedResourceCopiesSlices(t *testing.T) {
	as := []string{"https://auth.example.com"}
	scopes := []string{"mcp:tools"}
	pr, err := mcpauth.NewProtectedResource(mcpauth.ProtectedResourceOptions{Resource: testResource, AuthorizationServers: as, ScopesSupported: scopes})
	if err != nil {
		t.Fatal(err)
	}
	as[0], scopes[0] = "https://evil.example", "admin"
	pr.Metadata().ScopesSupported[0] = "admin"
	m := pr.Metadata()
	if m.AuthorizationServers[0] != "https://auth.example.com" || m.ScopesSupported[0] != "mcp:tools" {
		t.Errorf("metadata changed with the caller's slices: %+v", m)
	}
	w := serveToken(mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, noCredentials)(principalHandler), "")
	if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, `scope="mcp:tools"`) {
		t.Errorf("challenge %q changed with the caller's slices", got)
	}
}

// TestRequireChallengeWithResource checks that Require's challenges carry
// the resource's metadata URL, the scope hint on a 401, and never
// offline_access.
func TestRequireChallengeWithResource(t *testing.T) {
	const mdURL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	scopeErr := func(scopes ...string) mcpauth.Authenticator {
		return mcpauth.AuthenticatorFunc(func(*http.Request) (*mcpauth.Principal, error) {
			return nil, &mcpauth.ScopeError{Required: scopes}
		})
	}
	refuse := func(err error) mcpauth.Authenticator {
		return mcpauth.AuthenticatorFunc(func(*http.Request) (*mcpauth.Principal, error) { return nil, err })
	}
	pr := newTestResource(t, testResource, "https://auth.example.com")
	noHint, err := mcpauth.NewProtectedResource(mcpauth.ProtectedResourceOptions{Resource: testResource, AuthorizationServers: []string{"https://auth.example.com"}, ScopesSupported: []string{"mcp:tools"}, ChallengeScopes: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	twoHints, err := mcpauth.NewProtectedResource(mcpauth.ProtectedResourceOptions{Resource: testResource, AuthorizationServers: []string{"https://auth.example.com"}, ScopesSupported: []string{"mcp:tools"}, ChallengeScopes: []string{"mcp:tools", "mcp:read"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		opts      mcpauth.RequireOptions
		auth      mcpauth.Authenticator
		token     string
		status    int
		challenge string
	}{
		{"no token", mcpauth.RequireOptions{Resource: pr}, refuse(mcpauth.ErrNoCredentials), "", 401,
			`Bearer resource_metadata="` + mdURL + `", scope="mcp:tools"`},
		{"invalid token", mcpauth.RequireOptions{Resource: pr}, refuse(mcpauth.ClassTokenAudience), "x", 401,
			`Bearer resource_metadata="` + mdURL + `", error="invalid_token", error_description="The access token is not meant for this resource.", scope="mcp:tools"`},
		{"challenge scopes", mcpauth.RequireOptions{Resource: twoHints}, refuse(mcpauth.ErrNoCredentials), "", 401,
			`Bearer resource_metadata="` + mdURL + `", scope="mcp:tools mcp:read"`},
		{"no hint", mcpauth.RequireOptions{Resource: noHint}, refuse(mcpauth.ErrNoCredentials), "", 401,
			`Bearer resource_metadata="` + mdURL + `"`},
		{"insufficient scope", mcpauth.RequireOptions{Resource: pr}, scopeErr("mcp:write", "mcp:files"), "x", 403,
			`Bearer resource_metadata="` + mdURL + `", error="insufficient_scope", error_description="The caller is not allowed to do this.", scope="mcp:write mcp:files"`},
		{"offline_access left out", mcpauth.RequireOptions{Resource: pr}, scopeErr("mcp:write", "offline_access"), "x", 403,
			`Bearer resource_metadata="` + mdURL + `", error="insufficient_scope", error_description="The caller is not allowed to do this.", scope="mcp:write"`},
		{"forbidden", mcpauth.RequireOptions{Resource: pr}, refuse(mcpauth.ErrForbidden), "x", 403,
			`Bearer resource_metadata="` + mdURL + `", error="access_denied", error_description="The caller is not allowed to do this."`},
		{"unavailable", mcpauth.RequireOptions{Resource: pr}, refuse(mcpauth.ErrUnavailable), "x", 503, ""},
		{"Resource wins over a differing ResourceMetadataURL", mcpauth.RequireOptions{Resource: pr, ResourceMetadataURL: "https://elsewhere.example/prm"}, refuse(mcpauth.ErrNoCredentials), "", 401,
			`Bearer resource_metadata="` + mdURL + `", scope="mcp:tools"`},
		{"ResourceMetadataURL alone", mcpauth.RequireOptions{ResourceMetadataURL: "https://elsewhere.example/prm"}, refuse(mcpauth.ErrNoCredentials), "", 401,
			`Bearer resource_metadata="https://elsewhere.example/prm"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := &eventLog{}
			tt.opts.Events = events
			w := serveToken(mcpauth.Require(&tt.opts, tt.auth)(principalHandler), tt.token)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d", w.Code, tt.status)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate\n%s\nwant\n%s", got, tt.challenge)
			}
			if w.Code == 401 {
				// go-sdk's client reads the hint as the scopes to ask for.
				cs, err := oauthex.ParseWWWAuthenticate(w.Result().Header.Values("WWW-Authenticate"))
				if err != nil || len(cs) != 1 || cs[0].Params["resource_metadata"] == "" {
					t.Errorf("go-sdk parses %q as %v, %v", tt.challenge, cs, err)
				}
			}
			conflict := slices.ContainsFunc(events.all(), func(e mcpauth.Event) bool {
				return e.Kind == mcpauth.EventConfiguration && e.Outcome == mcpauth.OutcomeFailure
			})
			if want := tt.opts.Resource != nil && tt.opts.ResourceMetadataURL != ""; conflict != want {
				t.Errorf("configuration event: %v, want %v", conflict, want)
			}
		})
	}
}

// TestOAuthDiscovery checks the discovery of the authorization server's
// metadata: the URLs tried and their order, and the documents refused.
func TestOAuthDiscovery(t *testing.T) {
	tests := []struct {
		name       string
		issuerPath string
		metaAt     func(a *fakeAS) []string
		meta       func(a *fakeAS) map[string]any
		change     func(*mcpauth.OAuthVerifierOptions)
		tried      []string // the metadata paths asked, in order; nil when it must fail
		wantErr    string   // part of the error, when it must fail
	}{
		{name: "RFC 8414, path inserted", issuerPath: "/tenant1",
			metaAt: func(*fakeAS) []string { return []string{"/.well-known/oauth-authorization-server/tenant1"} },
			tried:  []string{"/.well-known/oauth-authorization-server/tenant1"}},
		{name: "OpenID, path inserted", issuerPath: "/tenant1",
			metaAt: func(*fakeAS) []string { return []string{"/.well-known/openid-configuration/tenant1"} },
			tried:  []string{"/.well-known/oauth-authorization-server/tenant1", "/.well-known/openid-configuration/tenant1"}},
		{name: "OpenID, path appended", issuerPath: "/tenant1",
			metaAt: func(*fakeAS) []string { return []string{"/tenant1/.well-known/openid-configuration"} },
			tried:  []string{"/.well-known/oauth-authorization-server/tenant1", "/.well-known/openid-configuration/tenant1", "/tenant1/.well-known/openid-configuration"}},
		{name: "RFC 8414, no path", issuerPath: "",
			metaAt: func(*fakeAS) []string { return []string{"/.well-known/oauth-authorization-server"} },
			tried:  []string{"/.well-known/oauth-authorization-server"}},
		{name: "OpenID, no path", issuerPath: "",
			metaAt: func(*fakeAS) []string { return []string{"/.well-known/openid-configuration"} },
			tried:  []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"}},
		{name: "JWKS only, no introspection credentials", issuerPath: "",
			metaAt: func(*fakeAS) []string { return []string{"/.well-known/oauth-authorization-server"} },
			change: func(o *mcpauth.OAuthVerifierOptions) { o.ClientID, o.ClientSecret = "", "" },
			tried:  []string{"/.well-known/oauth-authorization-server"}},
		{name: "introspection only", issuerPath: "",
			metaAt: func(*fakeAS) []string { return []string{"/.well-known/oauth-authorization-server"} },
			meta:   func(*fakeAS) map[string]any { return map[string]any{"jwks_uri": nil} },
			tried:  []string{"/.well-known/oauth-authorization-server"}},

		{name: "issuer mismatch: another host", issuerPath: "",
			meta: func(*fakeAS) map[string]any { return map[string]any{"issuer": "https://honest.example"} }, wantErr: "is not"},
		{name: "issuer mismatch: trailing slash", issuerPath: "/tenant1",
			meta: func(a *fakeAS) map[string]any { return map[string]any{"issuer": a.issuer + "/"} }, wantErr: "is not"},
		{name: "issuer mismatch: case", issuerPath: "/tenant1",
			meta: func(a *fakeAS) map[string]any { return map[string]any{"issuer": strings.ToUpper(a.issuer)} }, wantErr: "is not"},
		{name: "no issuer", issuerPath: "",
			meta: func(*fakeAS) map[string]any { return map[string]any{"issuer": nil} }, wantErr: "is not"},
		{name: "issuer spelt ISSUER", issuerPath: "",
			meta: func(a *fakeAS) map[string]any { return map[string]any{"issuer": nil, "ISSUER": a.issuer} }, wantErr: "ambiguously"},
		{name: "no metadata anywhere", issuerPath: "/tenant1",
			metaAt: func(*fakeAS) []string { return nil }, wantErr: "no authorization server metadata"},
		{name: "jwks_uri over http to another host", issuerPath: "",
			meta: func(*fakeAS) map[string]any { return map[string]any{"jwks_uri": "http://jwks.example.com/jwks"} }, wantErr: "jwks_uri: plain http"},
		{name: "introspection over http to another host", issuerPath: "",
			meta: func(*fakeAS) map[string]any {
				return map[string]any{"introspection_endpoint": "http://auth.example.com/introspect"}
			}, wantErr: "introspection_endpoint: plain http"},
		{name: "nothing to check tokens with", issuerPath: "",
			meta:   func(*fakeAS) map[string]any { return map[string]any{"jwks_uri": nil} },
			change: func(o *mcpauth.OAuthVerifierOptions) { o.ClientID, o.ClientSecret = "", "" }, wantErr: "no token could be checked"},
		{name: "credentials but no introspection endpoint", issuerPath: "",
			meta: func(*fakeAS) map[string]any { return map[string]any{"introspection_endpoint": nil} }, wantErr: "no introspection_endpoint"},
		{name: "introspection without client_secret_basic", issuerPath: "",
			meta: func(*fakeAS) map[string]any {
				return map[string]any{"introspection_endpoint_auth_methods_supported": []string{"private_key_jwt"}}
			}, wantErr: "client_secret_basic"},
		{name: "issuer not among the resource's authorization servers", issuerPath: "",
			change: func(o *mcpauth.OAuthVerifierOptions) { o.Issuer += "/other" }, wantErr: "AuthorizationServers"},
		{name: "no resource", issuerPath: "",
			change: func(o *mcpauth.OAuthVerifierOptions) { o.Resource = nil }, wantErr: "no Resource"},
		{name: "client ID without secret", issuerPath: "",
			change: func(o *mcpauth.OAuthVerifierOptions) { o.ClientSecret = "" }, wantErr: "ClientSecret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newFakeAS(t, tt.issuerPath)
			if tt.metaAt != nil {
				a.serveMetaAt(tt.metaAt(a)...)
			}
			if tt.meta != nil {
				a.setMeta(tt.meta(a))
			}
			opts := mcpauth.OAuthVerifierOptions{Issuer: a.issuer, Resource: newTestResource(t, testResource, a.issuer), ClientID: testClientID, ClientSecret: testClientSecret, Logger: quietLogger}
			if tt.change != nil {
				tt.change(&opts)
			}
			v, err := mcpauth.NewOAuthVerifier(context.Background(), opts)
			if tt.tried == nil {
				if err == nil {
					v.Close()
					t.Fatal("accepted")
				}
				if !strings.HasPrefix(err.Error(), "mcpauth: ") || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q, want one starting with mcpauth: and saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if m := v.AuthServerMetadata(); m == nil || m.Issuer != a.issuer {
				t.Errorf("AuthServerMetadata() = %+v", m)
			}
			var tried []string
			for _, r := range a.seen() {
				if strings.Contains(r.path, "/.well-known/") {
					tried = append(tried, r.path)
				}
			}
			if !slices.Equal(tried, tt.tried) {
				t.Errorf("tried %q, want %q", tried, tt.tried)
			}
		})
	}
}

// TestOAuthDiscoveryMismatchThenMatch checks that a document with another
// issuer is skipped, not used, when the next URL holds the right one.
func TestOAuthDiscoveryMismatchThenMatch(t *testing.T) {
	a := newFakeAS(t, "/tenant1")
	bad := newFakeAS(t, "/tenant1") // its document, with its own issuer
	a.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/oauth-authorization-server/tenant1" {
			bad.srv.Config.Handler.ServeHTTP(w, r)
			return
		}
		a.serve(w, r)
	})
	bad.serveMetaAt("/.well-known/oauth-authorization-server/tenant1")
	a.serveMetaAt("/.well-known/openid-configuration/tenant1")
	v := newTestOAuthVerifier(t, a, newTestResource(t, testResource, a.issuer), nil)
	if m := v.AuthServerMetadata(); m.Issuer != a.issuer || m.JWKSURI != a.srv.URL+"/jwks" {
		t.Errorf("used %+v", m)
	}
}

// TestOAuthDiscoveryRetry starts a verifier while the authorization server
// is down: requests get 503 until the background retry finds the metadata.
func TestOAuthDiscoveryRetry(t *testing.T) {
	a := newFakeAS(t, "")
	a.metaStatus.Store(http.StatusServiceUnavailable)
	pr := newTestResource(t, testResource, a.issuer)
	events := &eventLog{}
	v := newTestOAuthVerifier(t, a, pr, func(o *mcpauth.OAuthVerifierOptions) { o.Events = events })
	h := mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, v)(principalHandler)
	token := a.mint(testResource)
	if w := serveToken(h, token); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("while the metadata is down: status %d, want 503", w.Code)
	}
	if w := serveToken(h, ""); w.Code != http.StatusUnauthorized {
		t.Errorf("no token while the metadata is down: status %d, want 401", w.Code)
	}
	if !slices.ContainsFunc(events.all(), func(e mcpauth.Event) bool { return e.Kind == mcpauth.EventKeySource }) {
		t.Error("no key-source event for the failed discovery")
	}
	a.metaStatus.Store(0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		w := serveToken(h, token)
		if w.Code == http.StatusOK {
			break
		}
		if w.Code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("status %d after the metadata came back", w.Code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOAuthJWTAccessToken checks JWT access tokens: accepted for this
// resource only, from this issuer only.
func TestOAuthJWTAccessToken(t *testing.T) {
	a := newFakeAS(t, "/tenant1")
	pr := newTestResource(t, testResource, a.issuer)
	v := newTestOAuthVerifier(t, a, pr, nil)
	other := newFakeAS(t, "/other") // another issuer, with its own keys
	// A token of this issuer's name signed with another key.
	forged, err := mcpauth.NewJWTIssuer(mcpauth.JWTIssuerOptions{Issuer: a.issuer, Key: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	forgedToken, err := forged.Mint(mcpauth.TokenClaims{Subject: "alice", Audience: []string{testResource}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		token  string
		status int
		class  error // what Authenticate returns
	}{
		{"good", a.mint(testResource), 200, nil},
		{"audience with a trailing slash", a.mint(testResource + "/"), 200, nil},
		{"one of several audiences", a.mint("https://other.example.com", testResource), 200, nil},
		{"another resource", a.mint("https://other.example.com/mcp"), 401, mcpauth.ClassTokenAudience},
		{"the resource's origin", a.mint("https://mcp.example.com"), 401, mcpauth.ClassTokenAudience},
		{"a longer path", a.mint(testResource + "/x"), 401, mcpauth.ClassTokenAudience},
		{"no audience", a.mint(), 401, mcpauth.ClassTokenAudience},
		{"another issuer", other.mint(testResource), 401, mcpauth.ErrNoCredentials},
		{"forged signature", forgedToken, 401, mcpauth.ClassTokenAlgorithm},
	}
	h := mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, v)(principalHandler)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serveToken(h, tt.token)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if strings.Contains(w.Body.String()+w.Header().Get("WWW-Authenticate"), tt.token) {
				t.Error("the response contains the token")
			}
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r.Header.Set("Authorization", "Bearer "+tt.token)
			p, err := v.Authenticate(r)
			if tt.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				var got map[string]any
				_ = json.Unmarshal(w.Body.Bytes(), &got)
				if p.Method != mcpauth.MethodOAuth || p.Subject != "alice" || p.Issuer != a.issuer || p.ClientID != "client-1" ||
					!slices.Equal(p.Scopes, []string{"mcp:tools"}) || !slices.Equal(p.Roles, []string{"admin"}) || p.Expiry.IsZero() ||
					got["user_id"] != "oauth:"+a.issuer+"#alice" {
					t.Errorf("principal %+v, through Require %v", p, got)
				}
				return
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("Authenticate: %v, want %v", err, tt.class)
			}
			if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) || !strings.Contains(got, `resource_metadata="`+pr.MetadataURL()+`"`) {
				t.Errorf("WWW-Authenticate %q", got)
			}
		})
	}
}

// TestOAuthWithOtherAuthenticators checks the routing by shape: an API key
// in a bearer header and another issuer's JWT are left to the authenticators
// they belong to, in either order, and never reach the authorization server.
func TestOAuthWithOtherAuthenticators(t *testing.T) {
	a := newFakeAS(t, "")
	pr := newTestResource(t, testResource, a.issuer)
	v := newTestOAuthVerifier(t, a, pr, nil)
	key, err := mcpauth.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: key, Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	idp := newFakeAS(t, "/idp")
	jv, err := mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{Issuers: []mcpauth.TrustedIssuer{idp.jwt.TrustedIssuer(testResource)}})
	if err != nil {
		t.Fatal(err)
	}
	defer jv.Close()

	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	if _, err := v.Authenticate(r); !errors.Is(err, mcpauth.ErrNoCredentials) {
		t.Errorf("API key: Authenticate returned %v, want ErrNoCredentials", err)
	}
	r.Header.Set("Authorization", "Bearer mcpk_notakey")
	if _, err := v.Authenticate(r); !errors.Is(err, mcpauth.ErrNoCredentials) {
		t.Errorf("API-key-shaped value: Authenticate returned %v, want ErrNoCredentials", err)
	}
	for _, order := range [][]mcpauth.Authenticator{{v, keys, jv}, {keys, v, jv}} {
		h := mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, order...)(principalHandler)
		for _, tt := range []struct {
			token, method, subject string
		}{
			{key, "apikey", "bob"},
			{idp.mint(testResource), "jwt", "alice"},
			{a.mint(testResource), "oauth", "alice"},
		} {
			w := serveToken(h, tt.token)
			var got map[string]any
			_ = json.Unmarshal(w.Body.Bytes(), &got)
			if w.Code != 200 || got["method"] != tt.method || got["subject"] != tt.subject {
				t.Errorf("%T first, %s: status %d, %v", order[0], tt.method, w.Code, got)
			}
		}
	}
	if w := serveToken(mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Logger: quietLogger}, v)(principalHandler), "mcpk_"+strings.Repeat("a", 40)); w.Code != 401 {
		t.Errorf("API-key-shaped value with no API keys configured: status %d, want 401", w.Code)
	}
	for _, r := range a.seen() {
		if r.path == "/introspect" {
			t.Errorf("the authorization server was asked about a token not its own: %s", r.body)
		}
	}
}
