package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
)

// pki makes the certificates of one test: a CA, and certificates it or
// their own key signs.
type pki struct {
	t    *testing.T
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	next int64
}

func newPKI(t *testing.T) *pki {
	p := &pki{t: t, next: 1}
	p.ca, p.key = p.make(&x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	return p
}

// make signs tmpl with parent's key (self-signed when parent is nil).
func (p *pki) make(tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	p.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.next++
	tmpl.SerialNumber = big.NewInt(p.next)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		p.t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func (p *pki) client(cn string, edit func(*x509.Certificate)) tls.Certificate {
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	if edit != nil {
		edit(tmpl)
	}
	c, k := p.make(tmpl, p.ca, p.key)
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
}

func (p *pki) selfSigned(cn string) tls.Certificate {
	c, k := p.make(&x509.Certificate{Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, nil, nil)
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// mtlsEnv is the authorization server on two listeners: one that verifies
// client certificates against the CA (mcpauth.MTLS's configuration), one
// that takes any (for self-signed certificates), and a resource server
// that accepts its tokens over mTLS.
type mtlsEnv struct {
	pki              *pki
	as               *Server
	verified, any    *httptest.Server
	resource         *httptest.Server
	serverPool       *x509.CertPool
	selfSigned       tls.Certificate
	otherSelfSigned  tls.Certificate
	resourceURL, iss string
}

func newMTLSEnv(t *testing.T) *mtlsEnv {
	p := newPKI(t)
	e := &mtlsEnv{pki: p, serverPool: x509.NewCertPool()}
	e.serverPool.AddCert(p.ca)
	dir := t.TempDir()
	serverCert, serverKey := p.make(&x509.Certificate{Subject: pkix.Name{CommonName: "server"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature}, p.ca, p.key)
	kb, _ := x509.MarshalECPrivateKey(serverKey)
	mt, err := mcpauth.NewMTLS(mcpauth.MTLSOptions{
		ClientCAFiles: []string{writePEM(t, dir, "ca.pem", "CERTIFICATE", p.ca.Raw)},
		CertFile:      writePEM(t, dir, "server.pem", "CERTIFICATE", serverCert.Raw),
		KeyFile:       writePEM(t, dir, "server-key.pem", "EC PRIVATE KEY", kb),
	})
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, _ := mt.TLSConfig()

	mux := http.NewServeMux()
	e.verified = httptest.NewUnstartedServer(mux)
	e.verified.TLS = tlsConfig
	e.any = httptest.NewUnstartedServer(mux)
	e.any.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey}}, ClientAuth: tls.RequestClientCert}
	e.iss = "https://" + e.verified.Listener.Addr().String()
	e.resourceURL = "https://mcp.example/mcp"
	e.selfSigned, e.otherSelfSigned = p.selfSigned("self"), p.selfSigned("self")
	e.as, err = New(&Options{
		Issuer:      e.iss,
		Resources:   []string{e.resourceURL},
		Scopes:      []string{"tools:read"},
		MTLSBaseURL: "https://" + e.any.Listener.Addr().String(),
		Clients: []Client{
			{ID: "svc", TLSClientAuth: &TLSClientAuth{SubjectDN: "CN=svc-client,O=Example"}, GrantTypes: []string{"client_credentials"}, Scopes: []string{"tools:read"}},
			{ID: "dns", TLSClientAuth: &TLSClientAuth{DNS: "SVC.example.com"}, GrantTypes: []string{"client_credentials"}},
			{ID: "self", CertificateThumbprints: []string{mcpauth.Thumbprint(e.selfSigned.Leaf)}, GrantTypes: []string{"client_credentials"}},
			{ID: "secret", Secret: strings.Repeat("s", 32)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", e.as)
	e.verified.StartTLS()
	e.any.StartTLS()
	t.Cleanup(e.verified.Close)
	t.Cleanup(e.any.Close)

	v, err := e.as.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	e.resource = httptest.NewUnstartedServer(mcpauth.Require(&mcpauth.RequireOptions{Events: &eventLog{}}, mt, v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := mcpauth.PrincipalFromHTTPRequest(r)
		io.WriteString(w, string(p.Method)+":"+p.Subject)
	})))
	e.resource.TLS = tlsConfig
	e.resource.StartTLS()
	t.Cleanup(e.resource.Close)
	return e
}

func (e *mtlsEnv) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: e.serverPool}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

func (e *mtlsEnv) token(t *testing.T, srv *httptest.Server, cert *tls.Certificate, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := e.client(cert).PostForm(srv.URL+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// TestMTLSClientAuth authenticates clients by certificate at the token
// endpoint (RFC 8705 §2), binds their tokens to it (§3), and has the
// resource server accept a bound token only with the same certificate.
func TestMTLSClientAuth(t *testing.T) {
	e := newMTLSEnv(t)
	svc := e.pki.client("svc-client", func(c *x509.Certificate) { c.Subject.Organization = []string{"Example"} })
	svcOther := e.pki.client("svc-client", func(c *x509.Certificate) { c.Subject.Organization = []string{"Example"} })
	intruder := e.pki.client("intruder", nil)
	dns := e.pki.client("any", func(c *x509.Certificate) { c.DNSNames = []string{"svc.example.com"} })
	form := func(id string, extra ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	tests := []struct {
		name   string
		srv    *httptest.Server
		cert   *tls.Certificate
		form   url.Values
		status int
	}{
		{"tls_client_auth, subject DN", e.verified, &svc, form("svc"), 200},
		{"tls_client_auth, DNS SAN", e.verified, &dns, form("dns"), 200},
		{"tls_client_auth, another subject", e.verified, &intruder, form("svc"), 401},
		{"tls_client_auth, no certificate", e.verified, nil, form("svc"), 401},
		{"tls_client_auth, a secret as well", e.verified, &svc, form("svc", "client_secret", "x"), 401},
		{"tls_client_auth, chain not verified by TLS", e.any, &svc, form("svc"), 401},
		{"self_signed_tls_client_auth", e.any, &e.selfSigned, form("self"), 200},
		{"self_signed_tls_client_auth, another certificate", e.any, &e.otherSelfSigned, form("self"), 401},
		{"self_signed_tls_client_auth, no certificate", e.any, nil, form("self"), 401},
		{"secret client, a certificate and no secret", e.verified, &svc, form("secret"), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.token(t, tt.srv, tt.cert, tt.form)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %v", status, tt.status, body)
			}
			if status != 200 {
				if body["error"] != "invalid_client" {
					t.Errorf("error %v, want invalid_client", body["error"])
				}
				return
			}
			tok, _ := body["access_token"].(string)
			cnf, _ := claims(t, tok)["cnf"].(map[string]any)
			if cnf["x5t#S256"] != mcpauth.Thumbprint(tt.cert.Leaf) {
				t.Errorf("cnf %v, want the certificate's thumbprint", cnf)
			}
		})
	}

	// The resource server: the bound token with its certificate, with
	// another certificate of the same subject, and with none.
	_, body := e.token(t, e.verified, &svc, form("svc", "resource", e.resourceURL))
	tok, _ := body["access_token"].(string)
	for _, c := range []struct {
		name   string
		cert   *tls.Certificate
		status int
	}{{"its certificate", &svc, 200}, {"same subject, another certificate", &svcOther, 401}, {"no certificate", nil, 401}} {
		req, _ := http.NewRequest(http.MethodGet, e.resource.URL, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := e.client(c.cert).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || c.status == 200 && string(b) != "oauth:svc" {
			t.Errorf("resource, %s: %d %q, want %d", c.name, resp.StatusCode, b, c.status)
		}
	}

	// Introspection shows the binding (RFC 8705 §3.2); the introspecting
	// client is not the holder, so the binding does not stop it.
	resp, err := e.client(&svc).PostForm(e.verified.URL+"/introspect", url.Values{"client_id": {"svc"}, "token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	var in map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&in)
	resp.Body.Close()
	if cnf, _ := in["cnf"].(map[string]any); in["active"] != true || cnf["x5t#S256"] != mcpauth.Thumbprint(svc.Leaf) {
		t.Errorf("introspection %v", in)
	}
}

func TestMTLSMetadata(t *testing.T) {
	e := newMTLSEnv(t)
	resp, err := e.client(nil).Get(e.verified.URL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if m["tls_client_certificate_bound_access_tokens"] != true {
		t.Errorf("tls_client_certificate_bound_access_tokens = %v", m["tls_client_certificate_bound_access_tokens"])
	}
	aliases, _ := m["mtls_endpoint_aliases"].(map[string]any)
	if aliases["token_endpoint"] != e.any.URL+"/token" || aliases["introspection_endpoint"] != e.any.URL+"/introspect" {
		t.Errorf("mtls_endpoint_aliases = %v", aliases)
	}
	methods, _ := m["token_endpoint_auth_methods_supported"].([]any)
	var got []string
	for _, x := range methods {
		got = append(got, x.(string))
	}
	if !strings.Contains(strings.Join(got, " "), "tls_client_auth self_signed_tls_client_auth") {
		t.Errorf("token_endpoint_auth_methods_supported = %v", got)
	}

	// Without certificate clients or aliases, the metadata says nothing of
	// them: the zero Options do not advertise what is not served.
	as, err := New(&Options{Issuer: "https://as.example", Resources: []string{"https://mcp.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(as.metadata), "tls_client") || strings.Contains(string(as.metadata), "mtls") {
		t.Errorf("plain metadata mentions mTLS: %s", as.metadata)
	}
}

func TestMTLSClientConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		c    Client
		base string
	}{
		{"secret and certificate", Client{ID: "a", Secret: strings.Repeat("s", 32), TLSClientAuth: &TLSClientAuth{DNS: "a.example"}}, ""},
		{"two names", Client{ID: "a", TLSClientAuth: &TLSClientAuth{DNS: "a.example", Email: "a@example"}}, ""},
		{"no name", Client{ID: "a", TLSClientAuth: &TLSClientAuth{}}, ""},
		{"both certificate kinds", Client{ID: "a", TLSClientAuth: &TLSClientAuth{DNS: "a.example"}, CertificateThumbprints: []string{strings.Repeat("A", 43)}}, ""},
		{"bad thumbprint", Client{ID: "a", CertificateThumbprints: []string{"abc"}}, ""},
		{"http alias base", Client{ID: "a"}, "http://as.example"},
		{"alias base with a path", Client{ID: "a"}, "https://as.example/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(&Options{Issuer: "https://as.example", Resources: []string{"https://mcp.example"}, Clients: []Client{tt.c}, MTLSBaseURL: tt.base})
			if err == nil {
				t.Error("New accepted it")
			}
		})
	}
}
