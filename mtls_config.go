package mcpauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// reasonReloadFailed is the reason of the event for a failed reload.
const reasonReloadFailed = "reload_failed"

// mtlsFiles are the files an [MTLS] reads, and what they looked like when
// last read.
type mtlsFiles struct {
	cas            []string
	crl, cert, key string
	seen           []fileStamp // by the order of names()
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

func (f *mtlsFiles) names() []string {
	names := append([]string(nil), f.cas...)
	for _, n := range []string{f.crl, f.cert, f.key} {
		if n != "" {
			names = append(names, n)
		}
	}
	return names
}

func (f *mtlsFiles) stamps() []fileStamp {
	names := f.names()
	out := make([]fileStamp, len(names))
	for i, n := range names {
		if fi, err := os.Stat(n); err == nil {
			out[i] = fileStamp{fi.ModTime(), fi.Size(), true}
		}
	}
	return out
}

// mtlsState is one generation of what the files say.
type mtlsState struct {
	gen       uint64
	pool      *x509.CertPool
	cas       []*x509.Certificate
	crlIssuer []byte              // RawSubject of the CRL's issuer; nil without a CRL
	revokedSN map[string]struct{} // serial numbers (big-endian bytes) the CRL lists
	cert      *tls.Certificate    // nil without CertFile
	tls       *tls.Config         // what GetConfigForClient returns
}

// revoked reports whether the CRL lists leaf.
func (st *mtlsState) revoked(leaf *x509.Certificate) bool {
	if st.crlIssuer == nil || !bytes.Equal(leaf.RawIssuer, st.crlIssuer) {
		return false
	}
	_, ok := st.revokedSN[string(leaf.SerialNumber.Bytes())]
	return ok
}

// maxPEMFile bounds a file read as PEM: CA bundles and CRLs are at most a
// few MB.
const maxPEMFile = 16 << 20

func readBounded(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxPEMFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxPEMFile)
	}
	return os.ReadFile(name)
}

// load reads every file. The stamps are taken first, so that a file that
// changes while it is read is read again at the next check.
func (f *mtlsFiles) load(now time.Time) (*mtlsState, error) {
	stamps := f.stamps()
	st := &mtlsState{pool: x509.NewCertPool()}
	for _, name := range f.cas {
		b, err := readBounded(name)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		n := 0
		for len(b) > 0 {
			var block *pem.Block
			block, b = pem.Decode(b)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("client CA %s: %w", name, err)
			}
			if !c.IsCA {
				return nil, fmt.Errorf("client CA %s: a certificate that is not a CA", name)
			}
			st.pool.AddCert(c)
			st.cas = append(st.cas, c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("client CA %s: no certificate", name)
		}
	}
	if f.crl != "" {
		if err := st.loadCRL(f.crl, now); err != nil {
			return nil, err
		}
	}
	if f.cert != "" {
		cert, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("server certificate: %w", err)
		}
		st.cert = &cert
	}
	f.seen = stamps
	return st, nil
}

// loadCRL reads a CRL, PEM or DER, and checks it was signed by a client CA.
// Its NextUpdate is not enforced: an out-of-date list still refuses what it
// lists, and replacing the file is what updates it.
func (st *mtlsState) loadCRL(name string, now time.Time) error {
	b, err := readBounded(name)
	if err != nil {
		return fmt.Errorf("CRL: %w", err)
	}
	if block, _ := pem.Decode(b); block != nil {
		if block.Type != "X509 CRL" {
			return fmt.Errorf("CRL %s: a PEM block of type %q", name, block.Type)
		}
		b = block.Bytes
	}
	rl, err := x509.ParseRevocationList(b)
	if err != nil {
		return fmt.Errorf("CRL %s: %w", name, err)
	}
	var signer *x509.Certificate
	for _, ca := range st.cas {
		if bytes.Equal(ca.RawSubject, rl.RawIssuer) && rl.CheckSignatureFrom(ca) == nil {
			signer = ca
			break
		}
	}
	if signer == nil {
		return fmt.Errorf("CRL %s: not signed by a client CA", name)
	}
	if now.Before(rl.ThisUpdate) {
		return fmt.Errorf("CRL %s: issued in the future", name)
	}
	st.crlIssuer = signer.RawSubject
	st.revokedSN = make(map[string]struct{}, len(rl.RevokedCertificateEntries))
	for _, e := range rl.RevokedCertificateEntries {
		st.revokedSN[string(e.SerialNumber.Bytes())] = struct{}{}
	}
	return nil
}

// Reload reads the files again now, whatever their modification times. It
// returns the error, and reports it as an [EventConfiguration] event, when
// one cannot be read or parsed; the certificates, CAs and CRL stay as they
// were then.
func (m *MTLS) Reload() error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	return m.reloadLocked()
}

func (m *MTLS) reloadLocked() error {
	old := m.state.Load()
	st, err := m.files.load(m.now())
	if err != nil {
		// Not read again until a file changes.
		m.files.seen = m.files.stamps()
		emit(context.Background(), m.events, Event{Kind: EventConfiguration, Outcome: OutcomeFailure,
			Reason: reasonReloadFailed, Method: MethodMTLS, Detail: "mTLS files not reloaded; the previous ones stay in use"})
		return fmt.Errorf("mcpauth: mTLS: reload: %w", err)
	}
	st.gen = old.gen + 1
	st.tls = m.innerConfig(st)
	m.state.Store(st)
	// A new CRL or a CA removed may revoke what open requests present.
	notifyRevoked()
	return nil
}

// maybeReload checks the files, at most once per interval, and reloads
// them if one changed. One caller checks; the others go on with the
// current state.
func (m *MTLS) maybeReload(now time.Time) {
	if m.interval < 0 {
		return
	}
	next := m.nextCheck.Load()
	if now.UnixNano() < next || !m.nextCheck.CompareAndSwap(next, now.Add(m.interval).UnixNano()) {
		return
	}
	if !m.reloadMu.TryLock() {
		return
	}
	defer m.reloadMu.Unlock()
	if !stampsEqual(m.files.seen, m.files.stamps()) {
		_ = m.reloadLocked() // reported as an event
	}
}

func stampsEqual(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ok != b[i].ok || a[i].size != b[i].size || !a[i].mod.Equal(b[i].mod) {
			return false
		}
	}
	return true
}

// innerConfig is the configuration of the handshakes under st.
func (m *MTLS) innerConfig(st *mtlsState) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  st.pool,
		NextProtos: []string{"h2", "http/1.1"},
		Time:       m.now,
		// A revoked certificate does not complete a handshake; one revoked
		// while its connection is open is refused by Authenticate.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 && st.revoked(cs.PeerCertificates[0]) {
				return errors.New("mcpauth: mTLS: client certificate revoked")
			}
			return nil
		},
	}
	if m.requireCert {
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if st.cert != nil {
		c.Certificates = []tls.Certificate{*st.cert}
	}
	return c
}

// TLSConfig returns the server's TLS configuration: TLS 1.2 at least, the
// server certificate of CertFile, client certificates asked for and
// verified against the client CAs (required with RequireClientCert), and a
// CRL-revoked certificate refused. Every handshake uses the files as last
// loaded, so a rotated server certificate, CA or CRL applies to new
// connections without a restart.
//
// Its NextProtos are "h2" and "http/1.1", as net/http's server sets them:
// every handshake uses them, whatever a copy of the configuration says.
// It returns an error when no CertFile was configured.
func (m *MTLS) TLSConfig() (*tls.Config, error) {
	if m.files.cert == "" {
		return nil, errors.New("mcpauth: mTLS: TLSConfig needs CertFile and KeyFile")
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if m.outer == nil {
		m.outer = &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"},
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				m.maybeReload(m.now())
				return m.state.Load().tls, nil
			},
		}
	}
	return m.outer.Clone(), nil
}
