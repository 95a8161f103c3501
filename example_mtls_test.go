package mcpauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/mcpauth/mcpauth"
)

// A server that takes SPIFFE client certificates, with roles by SPIFFE ID,
// and a client that presents one over a real TLS connection.
func ExampleNewMTLS() {
	dir, _ := os.MkdirTemp("", "mtls-example")
	defer os.RemoveAll(dir)
	ca, caKey := exampleCert(nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid, c.KeyUsage = true, true, x509.KeyUsageCertSign
	})
	server, serverKey := exampleCert(ca, caKey, func(c *x509.Certificate) {
		c.IPAddresses, c.ExtKeyUsage = []net.IP{net.IPv4(127, 0, 0, 1)}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	spiffeID, _ := url.Parse("spiffe://example.org/ns/prod/sa/billing")
	client, clientKey := exampleCert(ca, caKey, func(c *x509.Certificate) {
		c.URIs, c.ExtKeyUsage = []*url.URL{spiffeID}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	write := func(name, typ string, der []byte) string {
		f := filepath.Join(dir, name)
		_ = os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
		return f
	}
	serverKeyDER, _ := x509.MarshalECPrivateKey(serverKey)

	auth, err := mcpauth.NewMTLS(mcpauth.MTLSOptions{
		ClientCAFiles: []string{write("ca.pem", "CERTIFICATE", ca.Raw)},
		CertFile:      write("server.pem", "CERTIFICATE", server.Raw),
		KeyFile:       write("server-key.pem", "EC PRIVATE KEY", serverKeyDER),
		Identity:      "spiffe",
		Roles:         map[string][]string{"spiffe://example.org/ns/prod/sa/billing": {"billing"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mcpauth.Require(nil, auth)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := mcpauth.PrincipalFromHTTPRequest(r)
		fmt.Fprintln(w, p.Method, p.Subject, p.Roles, p.UserID())
	})))
	srv.TLS, _ = auth.TLSConfig()
	srv.StartTLS()
	defer srv.Close()

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{{Certificate: [][]byte{client.Raw}, PrivateKey: clientKey}},
	}}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output:
	// 200 mtls spiffe://example.org/ns/prod/sa/billing [billing] mtls:spiffe://example.org/ns/prod/sa/billing
}

// exampleCert makes a certificate signed by parent (self-signed for nil).
func exampleCert(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, edit func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	edit(tmpl)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		log.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}
