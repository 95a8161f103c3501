package mcpauth

import (
	"crypto/tls"
	"testing"
	"time"
)

// TestMTLSRotation rotates the server certificate, the client CA and the
// CRL without a restart: the files change, the clock passes the reload
// interval, and the next handshake uses them.
func TestMTLSRotation(t *testing.T) {
	e := newMTLSEnv(t, func(o *MTLSOptions) { o.ReloadInterval = time.Minute })
	now := e.clock.Now()
	srv := e.start(t, nil)
	client := e.clientCA.issue(t, "demo-client", now, nil)

	serverSerial := func() string {
		t.Helper()
		resp, err := mtlsClient(e.serverCA, client).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	first := serverSerial()
	if first != e.server.cert.SerialNumber.String() {
		t.Fatalf("server certificate %s, want %s", first, e.server.cert.SerialNumber)
	}

	// The server certificate.
	next := e.serverCA.serverCert(t, now)
	writeFile(t, e.dir, "server.pem", next.certPEM)
	writeFile(t, e.dir, "server-key.pem", next.keyPEM)
	if got := serverSerial(); got != first {
		t.Fatalf("the certificate changed before the interval passed")
	}
	e.clock.Advance(time.Minute)
	if got := serverSerial(); got != next.cert.SerialNumber.String() {
		t.Fatalf("after rotation: server certificate %s, want %s", got, next.cert.SerialNumber)
	}

	// The client CA: a client of a new CA is refused, then accepted once
	// the CA file holds the new CA, and the old CA's clients are refused
	// once it no longer holds the old one.
	newCA := newTestCA(t, "new client CA", now)
	newClient := newCA.issue(t, "new-client", now, nil)
	if _, _, err := get(t, mtlsClient(e.serverCA, newClient), srv.URL); err == nil {
		t.Fatal("a client of an unknown CA got in")
	}
	writeFile(t, e.dir, "ca.pem", append(append([]byte(nil), e.clientCA.pem...), newCA.pem...))
	e.clock.Advance(time.Minute)
	if status, p, err := get(t, mtlsClient(e.serverCA, newClient), srv.URL); err != nil || status != 200 || p.Subject != "new-client" {
		t.Fatalf("client of the added CA: %d %+v %v", status, p, err)
	}
	oldConn := mtlsClient(e.serverCA, client)
	if status, _, err := get(t, oldConn, srv.URL); err != nil || status != 200 {
		t.Fatalf("client of the old CA, both trusted: %d %v", status, err)
	}
	writeFile(t, e.dir, "ca.pem", newCA.pem)
	e.clock.Advance(time.Minute)
	if _, _, err := get(t, mtlsClient(e.serverCA, client), srv.URL); err == nil {
		t.Fatal("a client of the removed CA completed a handshake")
	}
	// Its open connection is refused too: Authenticate checks against the
	// CAs of now.
	if status, _, err := get(t, oldConn, srv.URL); err != nil || status != 401 || e.lastReason() != "cert_untrusted" {
		t.Fatalf("open connection of the removed CA: %d %v %q", status, err, e.lastReason())
	}
}

// TestMTLSBadReload keeps the last good files when a reload fails, and
// reports it; a bad file at start-up is an error.
func TestMTLSBadReload(t *testing.T) {
	e := newMTLSEnv(t, nil)
	now := e.clock.Now()
	revoked := e.clientCA.issue(t, "revoked", now, nil)
	e.opts.CRLFile = writeFile(t, e.dir, "crl.pem", e.clientCA.crl(t, now, revoked.cert))
	e.opts.ReloadInterval = time.Minute
	m, err := NewMTLS(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := e.startWith(t, m)
	lenient := e.start(t, &tls.Config{Certificates: []tls.Certificate{e.server.tls}, ClientAuth: tls.RequestClientCert}, m)

	otherCA := newTestCA(t, "other", now)
	bad := map[string][]byte{
		"garbage":                 []byte("not a CRL"),
		"signed by an unknown CA": otherCA.crl(t, now),
		"a certificate":           e.clientCA.pem,
	}
	for name, data := range bad {
		t.Run(name, func(t *testing.T) {
			writeFile(t, e.dir, "crl.pem", data)
			if err := m.Reload(); err == nil {
				t.Fatal("Reload accepted a bad CRL")
			}
			if e.lastReason() != reasonReloadFailed {
				t.Errorf("event reason %q, want %q", e.lastReason(), reasonReloadFailed)
			}
			// The interval's check reports it too, once per change.
			writeFile(t, e.dir, "crl.pem", data)
			n := len(e.events.reasons())
			e.clock.Advance(time.Minute)
			if _, _, err := get(t, mtlsClient(e.serverCA, revoked), srv.URL); err == nil {
				t.Error("the revoked certificate completed a handshake after a bad reload")
			}
			if got := e.events.reasons(); len(got) != n+1 || got[n] != reasonReloadFailed {
				t.Errorf("events after the interval: %q", got[n:])
			}
			if status, _, _ := get(t, mtlsClient(e.serverCA, revoked), lenient.URL); status != 401 || e.lastReason() != "cert_revoked" {
				t.Errorf("the revoked certificate: %d %q", status, e.lastReason())
			}
			o := e.opts
			if _, err := NewMTLS(o); err == nil {
				t.Error("NewMTLS accepted the bad CRL")
			}
		})
	}
	writeFile(t, e.dir, "crl.pem", e.clientCA.crl(t, now))
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if status, _, err := get(t, mtlsClient(e.serverCA, revoked), srv.URL); err != nil || status != 200 {
		t.Fatalf("after a good CRL without it: %d %v", status, err)
	}
}
