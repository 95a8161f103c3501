package authserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/modelcontextprotocol/go-sdk/auth"
)

func TestMetadata(t *testing.T) {
	for _, tenant := range []string{"", "/tenant/one"} {
		t.Run("issuer path "+tenant, func(t *testing.T) {
			var env *testEnv
			env = newEnv(t, func(o *Options) { o.Issuer += tenant })
			issuer := env.srv.URL + tenant
			paths := []string{"/.well-known/oauth-authorization-server" + tenant, "/.well-known/openid-configuration" + tenant}
			if tenant != "" {
				paths = append(paths, tenant+"/.well-known/openid-configuration")
			}
			for _, p := range paths {
				resp, err := http.Get(env.url(p))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
					t.Fatalf("%s: %d, CORS %q", p, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
				}
				var raw map[string]any
				if err := json.Unmarshal(body, &raw); err != nil {
					t.Fatal(err)
				}
				if raw["issuer"] != issuer {
					t.Errorf("%s: issuer %v, want %q", p, raw["issuer"], issuer)
				}
				want := map[string]any{
					"response_types_supported":                       []any{"code"},
					"code_challenge_methods_supported":               []any{"S256"},
					"client_id_metadata_document_supported":          true,
					"authorization_response_iss_parameter_supported": true,
					"scopes_supported":                               []any{"tools:read", "tools:write", "admin"},
					"grant_types_supported":                          []any{"authorization_code", "refresh_token", "client_credentials"},
					"registration_endpoint":                          issuer + "/register",
					"revocation_endpoint":                            issuer + "/revoke",
					"introspection_endpoint":                         issuer + "/introspect",
					"jwks_uri":                                       issuer + "/jwks.json",
					"token_endpoint":                                 issuer + "/token",
					"authorization_endpoint":                         issuer + "/authorize",
				}
				for k, v := range want {
					if got, _ := json.Marshal(raw[k]); string(got) != mustJSON(v) {
						t.Errorf("%s: %s = %s, want %s", p, k, got, mustJSON(v))
					}
				}
				methods, _ := raw["token_endpoint_auth_methods_supported"].([]any)
				for _, m := range []string{"none", "client_secret_basic", "client_secret_post"} {
					if !slices.Contains(methods, any(m)) {
						t.Errorf("token_endpoint_auth_methods_supported %v lacks %s", methods, m)
					}
				}
			}
			// go-sdk's own discovery finds and accepts it.
			asm, err := auth.GetAuthServerMetadata(context.Background(), issuer, http.DefaultClient)
			if err != nil || asm == nil || asm.Issuer != issuer {
				t.Fatalf("go-sdk discovery: %v %+v", err, asm)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestMetadataOmitIss(t *testing.T) {
	env := newEnv(t, func(o *Options) {
		o.OmitIssParameter = true
		o.Registration.Disabled = true
		o.ClientMetadata.Disabled = true
	})
	_, m := env.do(mustRequest(t, "GET", env.url("/.well-known/oauth-authorization-server"), nil))
	for _, k := range []string{"authorization_response_iss_parameter_supported", "registration_endpoint", "client_id_metadata_document_supported"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present: %v", k, m[k])
		}
	}
	if resp, _ := env.post("/register", nil, nil); resp.StatusCode != 404 {
		t.Errorf("register with registration disabled: %d", resp.StatusCode)
	}
}

func mustRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestCORSAndPreflight(t *testing.T) {
	env := newEnv(t, nil)
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/jwks.json", "/token", "/register", "/revoke", "/introspect"} {
		resp, _ := env.do(mustRequest(t, "OPTIONS", env.url(p), nil))
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "OPTIONS") {
			t.Errorf("OPTIONS %s: %d %v", p, resp.StatusCode, resp.Header)
		}
	}
	resp, m := env.do(mustRequest(t, "GET", env.url("/token"), nil))
	if resp.StatusCode != http.StatusMethodNotAllowed || m["error"] != "invalid_request" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("GET /token: %d %v", resp.StatusCode, m)
	}
	if resp, _ := env.do(mustRequest(t, "GET", env.url("/nothing"), nil)); resp.StatusCode != 404 {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	good := func() *Options {
		return &Options{Issuer: "https://as.example", Resources: []string{"https://mcp.example/mcp"}, Scopes: []string{"read"}}
	}
	tests := []struct {
		name   string
		change func(o *Options)
	}{
		{"no issuer", func(o *Options) { o.Issuer = "" }},
		{"issuer trailing slash", func(o *Options) { o.Issuer = "https://as.example/" }},
		{"issuer http", func(o *Options) { o.Issuer = "http://as.example" }},
		{"issuer query", func(o *Options) { o.Issuer = "https://as.example?x=1" }},
		{"issuer fragment", func(o *Options) { o.Issuer = "https://as.example#x" }},
		{"issuer userinfo", func(o *Options) { o.Issuer = "https://u@as.example" }},
		{"issuer not ascii", func(o *Options) { o.Issuer = "https://as.exämple" }},
		{"no resources", func(o *Options) { o.Resources = nil }},
		{"resource fragment", func(o *Options) { o.Resources = []string{"https://mcp.example/#a"} }},
		{"resource relative", func(o *Options) { o.Resources = []string{"/mcp"} }},
		{"offline_access scope", func(o *Options) { o.Scopes = append(o.Scopes, "offline_access") }},
		{"bad scope token", func(o *Options) { o.Scopes = []string{"a b"} }},
		{"unknown default scope", func(o *Options) { o.DefaultScopes = []string{"write"} }},
		{"short secret", func(o *Options) { o.Secret = []byte("short") }},
		{"bad algorithm", func(o *Options) { o.SigningAlgorithm = "RS256" }},
		{"rotation shorter than token", func(o *Options) { o.KeyRotation = time.Minute; o.AccessTokenTTL = time.Hour }},
		{"negative ttl", func(o *Options) { o.RefreshTokenTTL = -1 }},
		{"bad redirect scheme option", func(o *Options) { o.RedirectSchemes = []string{"javascript"} }},
		{"client without id", func(o *Options) { o.Clients = []Client{{}} }},
		{"client id url", func(o *Options) {
			o.Clients = []Client{{ID: "https://c.example/x", RedirectURIs: []string{"https://c.example/cb"}}}
		}},
		{"client twice", func(o *Options) {
			o.Clients = []Client{{ID: "a", RedirectURIs: []string{"https://c/cb"}}, {ID: "a", RedirectURIs: []string{"https://c/cb"}}}
		}},
		{"client short secret", func(o *Options) { o.Clients = []Client{{ID: "a", Secret: "short"}} }},
		{"client both secrets", func(o *Options) {
			o.Clients = []Client{{ID: "a", Secret: testSecret, SecretSHA256: strings.Repeat("0", 64)}}
		}},
		{"client bad hash", func(o *Options) { o.Clients = []Client{{ID: "a", SecretSHA256: "xyz"}} }},
		{"client http redirect", func(o *Options) { o.Clients = []Client{{ID: "a", RedirectURIs: []string{"http://app.example/cb"}}} }},
		{"client javascript redirect", func(o *Options) { o.Clients = []Client{{ID: "a", RedirectURIs: []string{"javascript:alert(1)"}}} }},
		{"client code without redirect", func(o *Options) { o.Clients = []Client{{ID: "a", GrantTypes: []string{"authorization_code"}}} }},
		{"public client credentials", func(o *Options) {
			o.Clients = []Client{{ID: "a", GrantTypes: []string{"client_credentials"}}}
		}},
		{"client unknown grant", func(o *Options) {
			o.Clients = []Client{{ID: "a", Secret: testSecret, GrantTypes: []string{"password"}}}
		}},
		{"client unknown scope", func(o *Options) { o.Clients = []Client{{ID: "a", Secret: testSecret, Scopes: []string{"write"}}} }},
		{"client default outside scopes", func(o *Options) {
			o.Scopes = []string{"read", "write"}
			o.Clients = []Client{{ID: "a", Secret: testSecret, Scopes: []string{"read"}, DefaultScopes: []string{"write"}}}
		}},
		{"registration rate negative", func(o *Options) { o.Registration.RatePerMinute = -1 }},
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.change(o)
			if _, err := New(o); err == nil || !strings.HasPrefix(err.Error(), "mcpauth: ") {
				t.Fatalf("New: %v", err)
			}
		})
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	// The same list accepts what it should.
	o := good()
	o.Issuer = "http://127.0.0.1:8080/as"
	o.Clients = []Client{{ID: "c", RedirectURIs: []string{"cursor://anysphere.cursor-mcp/oauth/callback", "http://[::1]/cb", "http://localhost:3000/cb"}}}
	o.ClientMetadata.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	if _, err := New(o); err != nil {
		t.Errorf("loopback issuer and app redirects: %v", err)
	}
}

func TestResourceNormalization(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://mcp.example/mcp", "https://mcp.example/mcp"},
		{"https://mcp.example/mcp/", "https://mcp.example/mcp"},
		{"HTTPS://MCP.Example/mcp", "https://mcp.example/mcp"},
		{"https://mcp.example:443/mcp", "https://mcp.example/mcp"},
		{"https://mcp.example:8443", "https://mcp.example:8443"},
		{"https://mcp.example/", "https://mcp.example"},
		{"http://[::1]:80/x", "http://[::1]/x"},
		{"https://mcp.example/Path", "https://mcp.example/Path"},
	}
	for _, tt := range tests {
		if got, ok := normalizeResource(tt.in); !ok || got != tt.want {
			t.Errorf("normalizeResource(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
	for _, bad := range []string{"", "mcp.example", "https://mcp.example/#f", "ftp://x/y", "https://u:p@x/", "/rel"} {
		if got, ok := normalizeResource(bad); ok {
			t.Errorf("normalizeResource(%q) = %q, accepted", bad, got)
		}
	}
}

// A principal of this server's tokens is what the RBAC guard expects.
func verify(t *testing.T, env *testEnv, token string) *mcpauth.Principal {
	t.Helper()
	v, err := env.as.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return p
}

// TestConfigurationLoadedEvent: New reports its configuration once, as an
// EventConfiguration success, without a secret.
func TestConfigurationLoadedEvent(t *testing.T) {
	env := newEnv(t, nil)
	got := env.events.find(mcpauth.EventConfiguration, mcpauth.OutcomeSuccess)
	if len(got) != 1 || !strings.HasPrefix(got[0].Detail, "loaded: issuer "+env.srv.URL+", clients 4,") {
		t.Fatalf("configuration events %+v", got)
	}
	if strings.Contains(got[0].Detail, testSecret) {
		t.Fatal("the configuration event holds a secret")
	}
}
