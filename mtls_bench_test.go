package mcpauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcpauth/mcpauth/internal/benchcmp"
)

// benchMTLS is an MTLS, a request as the nth request of an established
// connection presents it (net/http hands every request of a connection the
// same parsed certificates), and an API-key request beside it.
func benchMTLS(b *testing.B) (m *MTLS, certReq *http.Request, keys *APIKeys, keyReq *http.Request) {
	e := newMTLSEnv(b, nil)
	cert := e.clientCA.issue(b, "demo-client", e.clock.Now(), nil)
	certReq = httptest.NewRequest(http.MethodPost, "/mcp", nil)
	certReq.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert.cert}}
	key, _ := GenerateAPIKey()
	keys, err := NewAPIKeys(APIKey{Key: key, Subject: "demo"})
	if err != nil {
		b.Fatal(err)
	}
	keyReq = httptest.NewRequest(http.MethodPost, "/mcp", nil)
	keyReq.Header.Set("X-API-Key", key)
	return e.m, certReq, keys, keyReq
}

// BenchmarkMTLSAuthenticate is the authenticator's cost per request on an
// established connection, beside the API-key authenticator's, interleaved.
func BenchmarkMTLSAuthenticate(b *testing.B) {
	m, certReq, keys, keyReq := benchMTLS(b)
	if p, err := m.Authenticate(certReq); err != nil || p.Subject != "demo-client" {
		b.Fatal(p, err)
	}
	b.Run("mtls", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = m.Authenticate(certReq)
		}
	})
	b.Run("apikey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = keys.Authenticate(keyReq)
		}
	})
	b.Run("ratio", func(b *testing.B) {
		benchcmp.Interleave(b, 100, func() { _, _ = m.Authenticate(certReq) }, func() { _, _ = keys.Authenticate(keyReq) })
	})
}

// BenchmarkMTLSRequire is the whole middleware (authentication, audit
// decision, go-sdk bridge) with a client certificate, beside an API key.
func BenchmarkMTLSRequire(b *testing.B) {
	m, certReq, keys, keyReq := benchMTLS(b)
	quiet := &RequireOptions{Logger: slog.New(slog.DiscardHandler)}
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	hm := Require(quiet, m)(next)
	hk := Require(quiet, keys)(next)
	w := benchcmp.NewDiscardWriter()
	b.ReportAllocs()
	benchcmp.Interleave(b, 100, func() { w.Reset(); hm.ServeHTTP(w, certReq) }, func() { w.Reset(); hk.ServeHTTP(w, keyReq) })
}

// BenchmarkMTLSHandshake is a full TLS 1.3 handshake (no resumption) with
// the helper's configuration, with a client certificate (ours) and
// without one (the baseline), interleaved.
func BenchmarkMTLSHandshake(b *testing.B) {
	e := newMTLSEnv(b, nil)
	cfg, err := e.m.TLSConfig()
	if err != nil {
		b.Fatal(err)
	}
	cert := e.clientCA.issue(b, "demo-client", e.clock.Now(), nil)
	pool := x509.NewCertPool()
	pool.AddCert(e.serverCA.cert)
	// Loopback TCP, not net.Pipe: a TLS 1.3 server writes its session
	// tickets after the handshake, which an unbuffered pipe would block.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s := tls.Server(c, cfg)
			err = s.Handshake()
			c.Close()
			served <- err
		}
	}()
	handshake := func(withCert bool) {
		cc := &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
		if withCert {
			cc.Certificates = []tls.Certificate{cert.tls}
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cc)
		if err != nil {
			b.Fatal(err)
		}
		// The server's side ends when it has checked the client's
		// certificate, after the client's Handshake returned.
		if err := <-served; err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	benchcmp.Interleave(b, 10, func() { handshake(true) }, func() { handshake(false) })
}

// BenchmarkMTLSBoundToken is a cached certificate-bound JWT over an
// established connection with its certificate, beside the same verifier's
// cached unbound token, interleaved: the cost of the binding check.
func BenchmarkMTLSBoundToken(b *testing.B) {
	e := newMTLSEnv(b, nil)
	cert := e.clientCA.issue(b, "demo-client", e.clock.Now(), nil)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	iss, err := NewJWTIssuer(JWTIssuerOptions{Issuer: "https://as.example.com", Key: key, Audience: []string{"https://mcp.example.com"}})
	if err != nil {
		b.Fatal(err)
	}
	v, err := NewJWTVerifier(JWTVerifierOptions{Issuers: []TrustedIssuer{iss.TrustedIssuer()}})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	request := func(extra map[string]any) *http.Request {
		tok, err := iss.Mint(TokenClaims{Subject: "alice", Extra: extra})
		if err != nil {
			b.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert.cert}}
		return r
	}
	bound := request(map[string]any{"cnf": map[string]any{"x5t#S256": Thumbprint(cert.cert)}})
	plain := request(nil)
	if _, err := v.Authenticate(bound); err != nil {
		b.Fatal(err)
	}
	benchcmp.Interleave(b, 100, func() { _, _ = v.Authenticate(bound) }, func() { _, _ = v.Authenticate(plain) })
}
