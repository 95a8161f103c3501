package mcpauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// mtlsEnv is a server with an MTLS authenticator, its files and its clock.
type mtlsEnv struct {
	dir                string
	clock              *fakeClock
	clientCA, serverCA *testCA
	server             *issued
	opts               MTLSOptions
	m                  *MTLS
	events             *recordEvents
}

func newMTLSEnv(t testing.TB, edit func(*MTLSOptions)) *mtlsEnv {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	e := &mtlsEnv{dir: t.TempDir(), clock: &fakeClock{now: now}, events: &recordEvents{}}
	e.clientCA = newTestCA(t, "client CA", now)
	e.serverCA = newTestCA(t, "server CA", now)
	e.server = e.serverCA.serverCert(t, now)
	e.opts = MTLSOptions{
		ClientCAFiles: []string{writeFile(t, e.dir, "ca.pem", e.clientCA.pem)},
		CertFile:      writeFile(t, e.dir, "server.pem", e.server.certPEM),
		KeyFile:       writeFile(t, e.dir, "server-key.pem", e.server.keyPEM),
		Events:        e.events,
		Clock:         e.clock.Now,
	}
	if edit != nil {
		edit(&e.opts)
	}
	m, err := NewMTLS(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	return e
}

// principalJSON is what whoamiHandler answers.
type principalJSON struct {
	Subject string
	Method  Method
	Roles   []string
	Expiry  time.Time
	KeyID   string
}

var whoamiHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p := PrincipalFromHTTPRequest(r)
	_ = json.NewEncoder(w).Encode(principalJSON{p.Subject, p.Method, p.Roles, p.Expiry, p.KeyID})
})

// start serves the authenticators over TLS with the env's configuration,
// or with cfg when it is not nil.
func (e *mtlsEnv) start(t *testing.T, cfg *tls.Config, authenticators ...Authenticator) *httptest.Server {
	t.Helper()
	if len(authenticators) == 0 {
		authenticators = []Authenticator{e.m}
	}
	srv := httptest.NewUnstartedServer(Require(&RequireOptions{Events: e.events}, authenticators...)(whoamiHandler))
	if cfg == nil {
		var err error
		if cfg, err = e.m.TLSConfig(); err != nil {
			t.Fatal(err)
		}
	}
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// get sends a GET with c and returns the status and principal; err is the
// transport's error (a refused handshake).
func get(t *testing.T, c *http.Client, url string, header ...string) (int, principalJSON, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, principalJSON{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p principalJSON
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
	}
	return resp.StatusCode, p, nil
}

func (e *mtlsEnv) lastReason() string {
	r := e.events.reasons()
	if len(r) == 0 {
		return ""
	}
	return r[len(r)-1]
}

// TestMTLSHandshake connects with certificates of every kind, through the
// helper's tls.Config (which refuses most in the handshake) and through a
// configuration that asks for any certificate and verifies none, where the
// authenticator must refuse them itself.
func TestMTLSHandshake(t *testing.T) {
	e := newMTLSEnv(t, nil)
	now := e.clock.Now()
	otherCA := newTestCA(t, "other CA", now)
	revoked := e.clientCA.issue(t, "revoked", now, nil)
	e.opts.CRLFile = writeFile(t, e.dir, "crl.pem", e.clientCA.crl(t, now, revoked.cert))
	m, err := NewMTLS(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	strict := e.start(t, nil)
	lenient := e.start(t, &tls.Config{Certificates: []tls.Certificate{e.server.tls}, ClientAuth: tls.RequestClientCert})

	tests := []struct {
		name string
		cert *issued
		// strictRefused: the helper's configuration ends the handshake.
		strictRefused bool
		reason        string // the authenticator's refusal; "" accepts
		status        int
	}{
		{"valid", e.clientCA.issue(t, "demo-client", now, nil), false, "", 200},
		{"no certificate", nil, false, "no_credentials", 401},
		{"expired", e.clientCA.issue(t, "old", now, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour) }), true, "cert_expired", 401},
		{"not yet valid", e.clientCA.issue(t, "early", now, func(c *x509.Certificate) { c.NotBefore = now.Add(time.Hour); c.NotAfter = now.Add(2 * time.Hour) }), true, "cert_not_yet_valid", 401},
		{"wrong CA", otherCA.issue(t, "demo-client", now, nil), true, "cert_untrusted", 401},
		{"server-auth EKU only", e.clientCA.issue(t, "server-ish", now, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }), true, "cert_usage", 401},
		{"no EKU at all", e.clientCA.issue(t, "any-use", now, func(c *x509.Certificate) { c.ExtKeyUsage = nil }), false, "cert_usage", 401},
		{"revoked by the CRL", revoked, true, "cert_revoked", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, srv := range []struct {
				name string
				url  string
			}{{"helper config", strict.URL}, {"lenient config", lenient.URL}} {
				status, p, err := get(t, mtlsClient(e.serverCA, tt.cert), srv.url)
				if srv.name == "helper config" && tt.strictRefused {
					if err == nil {
						t.Fatalf("%s: handshake succeeded (status %d), want it refused", srv.name, status)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", srv.name, err)
				}
				if status != tt.status {
					t.Fatalf("%s: status %d, want %d", srv.name, status, tt.status)
				}
				if tt.reason != "" {
					if got := e.lastReason(); got != tt.reason {
						t.Errorf("%s: reason %q, want %q", srv.name, got, tt.reason)
					}
					continue
				}
				if p.Subject != "demo-client" || p.Method != MethodMTLS || !p.Expiry.Equal(tt.cert.cert.NotAfter) || p.KeyID != Thumbprint(tt.cert.cert) {
					t.Errorf("%s: principal %+v", srv.name, p)
				}
			}
		})
	}
}

// TestMTLSOpenConnection shows that a connection does not outlive its
// certificate: one that expires, or is revoked, while the connection is
// open is refused on its next request.
func TestMTLSOpenConnection(t *testing.T) {
	e := newMTLSEnv(t, func(o *MTLSOptions) { o.ReloadInterval = -1 })
	now := e.clock.Now()
	srv := e.start(t, nil)
	t.Run("expiry", func(t *testing.T) {
		c := mtlsClient(e.serverCA, e.clientCA.issue(t, "short", now, func(c *x509.Certificate) { c.NotAfter = now.Add(10 * time.Minute) }))
		if status, _, err := get(t, c, srv.URL); err != nil || status != 200 {
			t.Fatalf("before expiry: %d %v", status, err)
		}
		e.clock.Advance(11 * time.Minute)
		defer e.clock.Advance(-11 * time.Minute)
		if status, _, err := get(t, c, srv.URL); err != nil || status != 401 || e.lastReason() != "cert_expired" {
			t.Fatalf("after expiry: %d %v %q", status, err, e.lastReason())
		}
	})
	t.Run("revocation", func(t *testing.T) {
		cert := e.clientCA.issue(t, "to-revoke", now, nil)
		c := mtlsClient(e.serverCA, cert)
		if status, _, err := get(t, c, srv.URL); err != nil || status != 200 {
			t.Fatalf("before revocation: %d %v", status, err)
		}
		// A CRL configured from now on: a new MTLS with the same files
		// would do, but Reload must pick up a CRL that changed.
		crl := writeFile(t, e.dir, "crl.pem", e.clientCA.crl(t, now))
		e.opts.CRLFile = crl
		m, err := NewMTLS(e.opts)
		if err != nil {
			t.Fatal(err)
		}
		srv := e.startWith(t, m)
		if status, _, err := get(t, c, srv.URL); err != nil || status != 200 {
			t.Fatalf("empty CRL: %d %v", status, err)
		}
		writeFile(t, e.dir, "crl.pem", e.clientCA.crl(t, now, cert.cert))
		if err := m.Reload(); err != nil {
			t.Fatal(err)
		}
		if status, _, err := get(t, c, srv.URL); err != nil || status != 401 || e.lastReason() != "cert_revoked" {
			t.Fatalf("open connection after revocation: %d %v %q", status, err, e.lastReason())
		}
		if _, _, err := get(t, mtlsClient(e.serverCA, cert), srv.URL); err == nil {
			t.Fatal("a new handshake with a revoked certificate succeeded")
		}
	})
}

// TestMTLSStreamEndsOnRevocation: a request that is still open when a new
// CRL revokes its certificate ends, with ErrRevoked as its cause.
func TestMTLSStreamEndsOnRevocation(t *testing.T) {
	e := newMTLSEnv(t, func(o *MTLSOptions) { o.ReloadInterval = -1 })
	now := e.clock.Now()
	cert := e.clientCA.issue(t, "streaming", now, nil)
	e.opts.CRLFile = writeFile(t, e.dir, "crl.pem", e.clientCA.crl(t, now))
	m, err := NewMTLS(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := m.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	opened, ended := make(chan struct{}), make(chan error, 1)
	srv := httptest.NewUnstartedServer(Require(&RequireOptions{Events: e.events}, m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		close(opened)
		select {
		case <-r.Context().Done():
			ended <- context.Cause(r.Context())
		case <-time.After(30 * time.Second):
			ended <- nil
		}
	})))
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	go func() {
		resp, err := mtlsClient(e.serverCA, cert).Get(srv.URL)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-opened
	writeFile(t, e.dir, "crl.pem", e.clientCA.crl(t, now, cert.cert))
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if cause := <-ended; !errors.Is(cause, ErrRevoked) {
		t.Fatalf("the open request ended with %v, want ErrRevoked", cause)
	}
}

func (e *mtlsEnv) startWith(t *testing.T, m *MTLS) *httptest.Server {
	t.Helper()
	cfg, err := m.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	return e.start(t, cfg, m)
}

// TestMTLSIdentityMapping reads each kind of identity over a real
// handshake, with roles from the table and from OU.
func TestMTLSIdentityMapping(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://Example.ORG/ns/prod/sa/api")
	tests := []struct {
		identity string
		edit     func(*x509.Certificate)
		roles    map[string][]string
		subject  string
		want     []string
	}{
		{"spiffe", func(c *x509.Certificate) { c.URIs = []*url.URL{spiffe} }, map[string][]string{"spiffe://example.org/ns/prod/sa/api": {"admin"}}, "spiffe://example.org/ns/prod/sa/api", []string{"admin", "ops"}},
		{"dns", func(c *x509.Certificate) { c.DNSNames = []string{"API.Example.com."} }, map[string][]string{"api.example.com": {"reader"}}, "api.example.com", []string{"reader", "ops"}},
		{"email", func(c *x509.Certificate) { c.EmailAddresses = []string{"Alice@Example.COM"} }, map[string][]string{"Alice@example.com": {"writer"}}, "Alice@example.com", []string{"writer", "ops"}},
		{"cn", nil, map[string][]string{"demo-client": {"user"}}, "demo-client", []string{"user", "ops"}},
	}
	for _, tt := range tests {
		t.Run(tt.identity, func(t *testing.T) {
			e := newMTLSEnv(t, func(o *MTLSOptions) {
				o.Identity, o.Roles, o.RoleAttribute = tt.identity, tt.roles, "OU"
			})
			srv := e.start(t, nil)
			cert := e.clientCA.issue(t, "demo-client", e.clock.Now(), func(c *x509.Certificate) {
				c.Subject.OrganizationalUnit = []string{"ops"}
				if tt.edit != nil {
					tt.edit(c)
				}
			})
			status, p, err := get(t, mtlsClient(e.serverCA, cert), srv.URL)
			if err != nil || status != 200 {
				t.Fatalf("%d %v", status, err)
			}
			if p.Subject != tt.subject || !slices.Equal(p.Roles, tt.want) {
				t.Errorf("principal %+v, want subject %q roles %q", p, tt.subject, tt.want)
			}
			// A certificate without the identity is refused.
			none := e.clientCA.issue(t, "", e.clock.Now(), nil)
			if status, _, _ := get(t, mtlsClient(e.serverCA, none), srv.URL); status != 401 || e.lastReason() != "cert_identity" {
				t.Errorf("without the identity: %d %q", status, e.lastReason())
			}
		})
	}
}

// TestMTLSHeaderCredentialDecides: a certificate decides alone only
// without a header credential, whatever the authenticators' order.
func TestMTLSHeaderCredentialDecides(t *testing.T) {
	e := newMTLSEnv(t, nil)
	key, _ := GenerateAPIKey()
	keys, err := NewAPIKeys(APIKey{Key: key, Subject: "key-user"})
	if err != nil {
		t.Fatal(err)
	}
	cert := e.clientCA.issue(t, "cert-user", e.clock.Now(), nil)
	cfg, _ := e.m.TLSConfig()
	for _, order := range [][]Authenticator{{e.m, keys}, {keys, e.m}} {
		srv := e.start(t, cfg, order...)
		c := mtlsClient(e.serverCA, cert)
		tests := []struct {
			name    string
			header  []string
			status  int
			subject string
		}{
			{"certificate alone", nil, 200, "cert-user"},
			{"certificate and API key", []string{"X-API-Key", key}, 200, "key-user"},
			{"certificate and a wrong API key", []string{"X-API-Key", "mcp_wrong"}, 401, ""},
			{"certificate and an unknown bearer token", []string{"Authorization", "Bearer a.b.c"}, 401, ""},
		}
		for _, tt := range tests {
			status, p, err := get(t, c, srv.URL, tt.header...)
			if err != nil || status != tt.status || p.Subject != tt.subject {
				t.Errorf("%s (mTLS first: %v): %d %q %v, want %d %q", tt.name, order[0] == Authenticator(e.m), status, p.Subject, err, tt.status, tt.subject)
			}
		}
	}
}

func TestNewMTLSErrors(t *testing.T) {
	e := newMTLSEnv(t, nil)
	tests := []struct {
		name string
		edit func(*MTLSOptions)
	}{
		{"no CA", func(o *MTLSOptions) { o.ClientCAFiles = nil }},
		{"missing CA file", func(o *MTLSOptions) { o.ClientCAFiles = []string{e.dir + "/nope.pem"} }},
		{"CA file of a leaf", func(o *MTLSOptions) { o.ClientCAFiles = []string{o.CertFile} }},
		{"cert without key", func(o *MTLSOptions) { o.KeyFile = "" }},
		{"unknown identity", func(o *MTLSOptions) { o.Identity = "uid" }},
		{"unknown role attribute", func(o *MTLSOptions) { o.RoleAttribute = "CN" }},
		{"role of a bad identity", func(o *MTLSOptions) { o.Identity, o.Roles = "spiffe", map[string][]string{"https://x": {"a"}} }},
		{"proxy header without proxies", func(o *MTLSOptions) { o.ProxyHeader = "X-Client-Cert" }},
		{"bad proxy", func(o *MTLSOptions) { o.ProxyHeader, o.TrustedProxies = "X-Client-Cert", []netip.Prefix{{}} }},
		{"proxy header a credential header", func(o *MTLSOptions) {
			o.ProxyHeader, o.TrustedProxies = "authorization", []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := e.opts
			tt.edit(&o)
			if _, err := NewMTLS(o); err == nil || !strings.HasPrefix(err.Error(), "mcpauth: ") {
				t.Errorf("NewMTLS = %v, want an mcpauth error", err)
			}
		})
	}
	m, err := NewMTLS(MTLSOptions{ClientCAFiles: e.opts.ClientCAFiles})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.TLSConfig(); err == nil {
		t.Error("TLSConfig without a server certificate succeeded")
	}
	// The zero ReloadInterval is a minute, and the zero Identity is cn.
	if m.interval != time.Minute || m.identity != "cn" || m.requireCert {
		t.Errorf("defaults: interval %v identity %q requireCert %v", m.interval, m.identity, m.requireCert)
	}
	var nilM *MTLS
	if _, err := nilM.Authenticate(httptest.NewRequest("GET", "/", nil)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("nil MTLS: %v", err)
	}
}

func TestMTLSRequireClientCert(t *testing.T) {
	e := newMTLSEnv(t, func(o *MTLSOptions) { o.RequireClientCert = true })
	srv := e.start(t, nil)
	if _, _, err := get(t, mtlsClient(e.serverCA, nil), srv.URL); err == nil {
		t.Fatal("a handshake without a client certificate succeeded")
	}
	cert := e.clientCA.issue(t, "demo-client", e.clock.Now(), nil)
	if status, _, err := get(t, mtlsClient(e.serverCA, cert), srv.URL); err != nil || status != 200 {
		t.Fatalf("with a certificate: %d %v", status, err)
	}
	resp, err := mtlsClient(e.serverCA, cert).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", resp.TLS.Version)
	}
}
