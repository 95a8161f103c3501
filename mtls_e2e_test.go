package mcpauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMTLSMCPClient connects go-sdk's MCP client over mTLS, in every mode,
// and calls a tool that reads the principal from the request.
func TestMTLSMCPClient(t *testing.T) {
	ForEachBridge(t, func(t *testing.T) {
		for _, mode := range mcptest.Modes {
			t.Run(mode.Name, func(t *testing.T) {
				e := newMTLSEnv(t, func(o *MTLSOptions) { o.Roles = map[string][]string{"demo-client": {"admin"}} })
				server := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "1"}, nil)
				type out struct {
					Subject, Method, UserID string
					Roles                   []string
				}
				mcp.AddTool(server, &mcp.Tool{Name: "whoami"}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, out, error) {
					p := PrincipalFromRequest(req)
					if p == nil {
						return nil, out{}, errors.New("no principal")
					}
					return nil, out{p.Subject, string(p.Method), req.Extra.TokenInfo.UserID, p.Roles}, nil
				})
				srv := httptest.NewUnstartedServer(Require(&RequireOptions{Events: e.events}, e.m)(mode.Handler(server)))
				srv.TLS, _ = e.m.TLSConfig()
				srv.StartTLS()
				defer srv.Close()

				connect := func(cert *issued) (*mcp.ClientSession, error) {
					c := mcp.NewClient(&mcp.Implementation{Name: "mtls-test", Version: "1"}, nil)
					tr := &mcp.StreamableClientTransport{Endpoint: srv.URL, HTTPClient: mtlsClient(e.serverCA, cert), DisableStandaloneSSE: true}
					return c.Connect(context.Background(), tr, &mcp.ClientSessionOptions{ProtocolVersion: mode.ProtocolVersion})
				}
				cs, err := connect(e.clientCA.issue(t, "demo-client", e.clock.Now(), nil))
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer cs.Close()
				for range 2 { // the second call rides the open connection
					res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "whoami"})
					if err != nil || res.IsError {
						t.Fatalf("call: %v %+v", err, res)
					}
					got, _ := res.StructuredContent.(map[string]any)
					if got["Subject"] != "demo-client" || got["Method"] != "mtls" || got["UserID"] != "mtls:demo-client" {
						t.Errorf("whoami = %v", got)
					}
					if roles, _ := got["Roles"].([]any); len(roles) != 1 || roles[0] != "admin" {
						t.Errorf("roles = %v", got["Roles"])
					}
				}
				// Without a certificate, the client gets nowhere.
				if cs, err := connect(nil); err == nil {
					cs.Close()
					t.Error("a client without a certificate connected")
				}
			})
		}
	})
}

// TestMTLSBoundToken: a token bound to a certificate (RFC 8705 cnf
// x5t#S256) works only over a connection that presents that certificate,
// directly or through a trusted proxy.
func TestMTLSBoundToken(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	iss, err := NewJWTIssuer(JWTIssuerOptions{Issuer: "https://as.example.com", Key: key, Audience: []string{"https://mcp.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewJWTVerifier(JWTVerifierOptions{Issuers: []TrustedIssuer{iss.TrustedIssuer()}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	e := newMTLSEnv(t, func(o *MTLSOptions) {
		o.ProxyHeader, o.TrustedProxies = "X-Client-Cert", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	now := e.clock.Now()
	certA := e.clientCA.issue(t, "a", now, nil)
	certB := e.clientCA.issue(t, "b", now, nil)
	mint := func(cnf map[string]any) string {
		tok, err := iss.Mint(TokenClaims{Subject: "alice", Extra: map[string]any{"cnf": cnf}})
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	bound := mint(map[string]any{"x5t#S256": Thumbprint(certA.cert)})
	dpop := mint(map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})

	// The same files without proxy mode, for clients that connect directly
	// (from 127.0.0.1, which the proxied server takes for its proxy).
	o := e.opts
	o.ProxyHeader, o.TrustedProxies = "", nil
	m, err := NewMTLS(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := m.TLSConfig()
	for _, order := range [][]int{{0, 1}, {1, 0}} {
		pick := func(mt *MTLS) []Authenticator {
			a := []Authenticator{mt, v}
			return []Authenticator{a[order[0]], a[order[1]]}
		}
		direct := e.start(t, cfg, pick(m)...)
		proxied := httptest.NewServer(Require(&RequireOptions{Events: e.events}, pick(e.m)...)(whoamiHandler))
		defer proxied.Close()
		tests := []struct {
			name   string
			client *http.Client
			url    string
			header []string
			status int
			reason string
		}{
			{"its certificate", mtlsClient(e.serverCA, certA), direct.URL, []string{"Authorization", bound}, 200, ""},
			{"its certificate, again (cached token)", mtlsClient(e.serverCA, certA), direct.URL, []string{"Authorization", bound}, 200, ""},
			{"another certificate", mtlsClient(e.serverCA, certB), direct.URL, []string{"Authorization", bound}, 401, "cert_mismatch"},
			{"no certificate", mtlsClient(e.serverCA, nil), direct.URL, []string{"Authorization", bound}, 401, "cert_mismatch"},
			{"bound to a DPoP key", mtlsClient(e.serverCA, certA), direct.URL, []string{"Authorization", dpop}, 401, "bound_token"},
			{"its certificate through the proxy", proxied.Client(), proxied.URL, []string{"Authorization", bound, "X-Client-Cert", escapedPEM(certA.certPEM)}, 200, ""},
			{"another certificate through the proxy", proxied.Client(), proxied.URL, []string{"Authorization", bound, "X-Client-Cert", escapedPEM(certB.certPEM)}, 401, "cert_mismatch"},
			{"no certificate through the proxy", proxied.Client(), proxied.URL, []string{"Authorization", bound}, 401, "cert_mismatch"},
		}
		for _, tt := range tests {
			status, p, err := get(t, tt.client, tt.url, tt.header...)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if status != tt.status || (status == 200 && (p.Subject != "alice" || p.Method != MethodJWT)) {
				t.Errorf("%s: %d %+v, want %d", tt.name, status, p, tt.status)
			}
			if tt.reason != "" && e.lastReason() != tt.reason {
				t.Errorf("%s: reason %q, want %q", tt.name, e.lastReason(), tt.reason)
			}
		}
	}
	// Verify has no connection: a bound token is refused.
	if _, err := v.Verify(context.Background(), bound[len("Bearer "):]); !errors.Is(err, errTokenBound) {
		t.Errorf("Verify of a bound token = %v, want errTokenBound", err)
	}
}

// TestProtectedResourceCertificateBound: the resource metadata advertises
// certificate-bound tokens when asked to, and only then.
func TestProtectedResourceCertificateBound(t *testing.T) {
	for _, bound := range []bool{false, true} {
		pr, err := NewProtectedResource(ProtectedResourceOptions{
			Resource:               "https://mcp.example.com/mcp",
			AuthorizationServers:   []string{"https://as.example.com"},
			CertificateBoundTokens: bound,
		})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		pr.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/oauth-protected-resource/mcp", nil))
		got := strings.Contains(w.Body.String(), `"tls_client_certificate_bound_access_tokens":true`)
		if got != bound || w.Code != 200 {
			t.Errorf("CertificateBoundTokens %v: %d %s", bound, w.Code, w.Body)
		}
	}
}
