package mcpauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/mcpauth/internal/header"
)

// The client-certificate error classes. Each refines [ErrInvalidCredentials]
// (through [ErrExpired], [ErrRevoked] or [ErrMalformed] where that is what it
// is), so that [Require] answers all of them with 401 and
// error="invalid_token", with a fixed description of its own.
var (
	errCertExpired     error = &errorClass{msg: "mcpauth: client certificate expired", reason: "cert_expired", desc: "The client certificate has expired.", parent: ErrExpired}
	errCertNotYetValid error = &errorClass{msg: "mcpauth: client certificate not yet valid", reason: "cert_not_yet_valid", desc: "The client certificate is not valid yet.", parent: ErrInvalidCredentials}
	errCertUntrusted   error = &errorClass{msg: "mcpauth: client certificate not trusted", reason: "cert_untrusted", desc: "The client certificate is not issued by a trusted authority.", parent: ErrInvalidCredentials}
	errCertUsage       error = &errorClass{msg: "mcpauth: client certificate not for client authentication", reason: "cert_usage", desc: "The client certificate is not meant for client authentication.", parent: ErrInvalidCredentials}
	errCertRevoked     error = &errorClass{msg: "mcpauth: client certificate revoked", reason: "cert_revoked", desc: "The client certificate has been revoked.", parent: ErrRevoked}
	errCertIdentity    error = &errorClass{msg: "mcpauth: client certificate names no usable identity", reason: "cert_identity", desc: "The client certificate does not name exactly one usable identity.", parent: ErrInvalidCredentials}
	errCertMismatch    error = &errorClass{msg: "mcpauth: token bound to another certificate", reason: "cert_mismatch", desc: "The access token is bound to a client certificate this connection does not present.", parent: ErrInvalidCredentials}
)

// MTLSOptions configures [NewMTLS]. The zero value of every field but
// ClientCAFiles is the strict setting.
type MTLSOptions struct {
	// ClientCAFiles are PEM files of the certificate authorities whose
	// client certificates are accepted (roots, and intermediates that
	// clients or a proxy do not send). Required.
	ClientCAFiles []string

	// CRLFile is a PEM or DER certificate revocation list (RFC 5280),
	// signed by one of the client CAs. A client certificate it lists is
	// refused. Empty (the default) means no revocation list. Only the
	// certificates the CRL's issuer signed directly are checked against it.
	CRLFile string

	// CertFile and KeyFile are the server's certificate (chain) and key,
	// PEM files, for [MTLS.TLSConfig]. Empty (the default) means no server
	// certificate, and TLSConfig returns an error.
	CertFile, KeyFile string

	// RequireClientCert makes TLSConfig refuse a TLS handshake without a
	// valid client certificate (tls.RequireAndVerifyClientCert). False (the
	// default) asks for one and verifies it if given
	// (tls.VerifyClientCertIfGiven), so that clients with an API key or a
	// token can use the same listener; [Require] still refuses a request
	// that carries no credential at all.
	RequireClientCert bool

	// Identity is where a certificate's identity, the principal's Subject,
	// is read from: "cn" (the subject's common name; the default, for
	// empty), "dns" (a DNS name SAN, lower-cased, without a trailing dot),
	// "email" (an email SAN, its domain lower-cased) or "spiffe" (a URI SAN
	// that is a SPIFFE ID, spiffe://trust-domain/path). A certificate must
	// hold exactly one of the kind, or it is refused: which one counts is
	// never a matter of order.
	Identity string

	// Roles maps identities (spelt as Identity reads them; they are
	// brought to the same normal form) to roles.
	Roles map[string][]string
	// RoleAttribute adds the values of a subject attribute as roles: "OU"
	// (organizational unit) or "O" (organization). Empty (the default)
	// adds none.
	RoleAttribute string

	// ProxyHeader and TrustedProxies turn on proxy mode, for a server
	// behind a TLS-terminating proxy: a request from one of the
	// TrustedProxies (prefixes matched against the connection's remote
	// address; a single address is a /32 or /128, and an IPv4-mapped IPv6
	// prefix counts as its IPv4 one) carries the client's certificate in
	// ProxyHeader, "X-Forwarded-Client-Cert" (Envoy's format, whose Cert or
	// Chain is read from the last element) or any other name (a
	// URL-encoded PEM, as nginx's $ssl_client_escaped_cert). The
	// certificate is checked as if the client had presented it here. The
	// header from any other address is refused with 401, and audited.
	// Empty (the default) means no proxy mode: only the connection's own
	// certificate counts.
	ProxyHeader    string
	TrustedProxies []netip.Prefix

	// ReloadInterval is how often the files are checked for changes (by
	// modification time and size); a changed file is read again, so that
	// certificates, CAs and the CRL are rotated without a restart. The
	// check happens on a handshake or a request, at most once per
	// interval. Zero (the default) means one minute; a negative value
	// checks only when [MTLS.Reload] is called. A reload that fails keeps
	// everything as it was and reports an [EventConfiguration] event.
	ReloadInterval time.Duration

	// Events receives the reload failures. Nil (the default) means
	// [LogEvents] on Logger.
	Events EventSink
	// Logger is where the default event sink writes. Nil (the default)
	// means slog.Default().
	Logger *slog.Logger

	// Clock returns the current time, for certificate validity. Nil (the
	// default) means time.Now.
	Clock func() time.Time
}

// MTLS authenticates requests by their TLS client certificate (method
// [MethodMTLS]) and builds the server's [tls.Config]. It is an
// [Authenticator]: a request that carries a header credential (an API key or
// an Authorization header) is left to the other authenticators, whatever
// their order, so a certificate decides alone only when no header
// credential is sent (a token bound to the certificate is checked against it
// by the [JWTVerifier], RFC 8705).
//
// It checks the certificate itself on the first request of a connection,
// whatever the tls.Config did: the chain must lead to a client CA, every
// certificate of it be valid at the time, the leaf carry the client-auth
// extended key usage and not be revoked by the CRL. The principal's Subject
// is the identity (see [MTLSOptions].Identity), KeyID the certificate's
// SHA-256 thumbprint (x5t#S256), Expiry the earliest NotAfter of the chain.
//
// An MTLS is safe for concurrent use.
type MTLS struct {
	files         mtlsFiles
	identity      string
	roles         map[string][]string
	roleAttribute string
	requireCert   bool
	proxyHeader   string
	proxies       []netip.Prefix // trusted proxies, in normal form
	interval      time.Duration
	now           func() time.Time
	clockOpt      func() time.Time // opts.Clock: nil unless one was given
	events        EventSink

	state     atomic.Pointer[mtlsState]
	nextCheck atomic.Int64 // Unix nanoseconds of the next file check
	reloadMu  sync.Mutex
	outer     *tls.Config // what TLSConfig hands out, built once
	cache     certCache
}

// NewMTLS returns a client-certificate authenticator. It reads the files
// before it returns and fails on any it cannot read or parse, a CRL that no
// client CA signed, an unknown Identity or RoleAttribute, a role mapping
// whose identity is not of the Identity's form, or a trusted proxy that is
// not an address or prefix.
func NewMTLS(opts MTLSOptions) (*MTLS, error) {
	if len(opts.ClientCAFiles) == 0 {
		return nil, errors.New("mcpauth: mTLS: no client CA file")
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("mcpauth: mTLS: set both CertFile and KeyFile, or neither")
	}
	m := &MTLS{
		files: mtlsFiles{
			cas:  slices.Clone(opts.ClientCAFiles),
			crl:  opts.CRLFile,
			cert: opts.CertFile,
			key:  opts.KeyFile,
		},
		identity:      opts.Identity,
		roleAttribute: opts.RoleAttribute,
		requireCert:   opts.RequireClientCert,
		interval:      opts.ReloadInterval,
		now:           opts.Clock,
		clockOpt:      opts.Clock,
		events:        sinkFor(opts.Events, opts.Logger),
	}
	if m.identity == "" {
		m.identity = "cn"
	}
	switch m.identity {
	case "cn", "dns", "email", "spiffe":
	default:
		return nil, fmt.Errorf("mcpauth: mTLS: unknown Identity %q (want cn, dns, email or spiffe)", opts.Identity)
	}
	switch m.roleAttribute {
	case "", "OU", "O":
	default:
		return nil, fmt.Errorf("mcpauth: mTLS: unknown RoleAttribute %q (want OU or O)", opts.RoleAttribute)
	}
	if len(opts.Roles) > 0 {
		m.roles = make(map[string][]string, len(opts.Roles))
		for id, roles := range opts.Roles {
			norm, ok := normalIdentity(m.identity, id)
			if !ok {
				return nil, fmt.Errorf("mcpauth: mTLS: Roles: %q is not a %s identity", id, m.identity)
			}
			m.roles[norm] = append(m.roles[norm], roles...)
		}
	}
	if m.interval == 0 {
		m.interval = time.Minute
	}
	if m.now == nil {
		m.now = time.Now
	}
	if err := m.setupProxy(opts.ProxyHeader, opts.TrustedProxies); err != nil {
		return nil, err
	}
	st, err := m.files.load(m.now())
	if err != nil {
		return nil, fmt.Errorf("mcpauth: mTLS: %w", err)
	}
	st.gen = 1
	st.tls = m.innerConfig(st)
	m.state.Store(st)
	m.nextCheck.Store(m.now().Add(m.interval).UnixNano())
	return m, nil
}

// Authenticate implements [Authenticator]. A request with a header
// credential, or without a client certificate, gets [ErrNoCredentials].
func (m *MTLS) Authenticate(r *http.Request) (*Principal, error) {
	if m == nil {
		return nil, failure(MethodMTLS, ErrUnavailable, "", "not configured")
	}
	if header.Credentials(r.Header) > 0 {
		return nil, ErrNoCredentials
	}
	if m.proxyHeader != "" {
		// Require has done this already; a caller without Require must
		// not have a proxy's own certificate taken for its client's.
		r2, err := m.connection(r)
		if err != nil {
			return nil, err
		}
		r = r2
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, ErrNoCredentials
	}
	now := m.now()
	m.maybeReload(now)
	e := m.check(r.TLS.PeerCertificates, certKey{leaf: r.TLS.PeerCertificates[0]}, now)
	return e.result(now)
}

// certEntry is the outcome of checking one certificate chain under one
// generation of the files: a sealed principal, or the refusal.
type certEntry struct {
	gen       uint64
	certs     []*x509.Certificate // as presented, leaf first
	p         *Principal
	err       error
	notBefore time.Time // the latest NotBefore of the chain
	notAfter  time.Time // the earliest NotAfter of the chain
}

// result is the entry's answer at now: validity is checked on every
// request, since an entry outlives the moment it was made.
func (e *certEntry) result(now time.Time) (*Principal, error) {
	if e.err != nil {
		return nil, e.err
	}
	if now.Before(e.notBefore) {
		return nil, failure(MethodMTLS, errCertNotYetValid, e.p.KeyID, "")
	}
	if !now.Before(e.notAfter) {
		return nil, failure(MethodMTLS, errCertExpired, e.p.KeyID, "")
	}
	return e.p, nil
}

// check returns the outcome for certs, from the cache when the same chain
// was checked under the current files.
func (m *MTLS) check(certs []*x509.Certificate, key certKey, now time.Time) *certEntry {
	st := m.state.Load()
	if e := m.cache.get(key); e != nil && e.gen == st.gen && sameChain(e.certs, certs) {
		return e
	}
	e := m.verify(st, certs, now)
	m.cache.put(key, e)
	return e
}

func sameChain(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// verify checks a chain against the files of st.
func (m *MTLS) verify(st *mtlsState, certs []*x509.Certificate, now time.Time) *certEntry {
	leaf := certs[0]
	x5t := Thumbprint(leaf)
	e := &certEntry{gen: st.gen, certs: slices.Clone(certs)}
	fail := func(class error, detail string) *certEntry {
		e.err = failure(MethodMTLS, class, x5t, detail)
		return e
	}
	// Validity first, with reasons of its own, and the result not kept:
	// a certificate not valid yet becomes valid.
	if now.Before(leaf.NotBefore) {
		e.err = failure(MethodMTLS, errCertNotYetValid, x5t, "")
		e.gen = 0
		return e
	}
	if !now.Before(leaf.NotAfter) {
		e.err = failure(MethodMTLS, errCertExpired, x5t, "")
		e.gen = 0
		return e
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         st.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		var invalid x509.CertificateInvalidError
		switch {
		case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
			return fail(errCertUsage, "")
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			e.gen = 0 // a CA's validity, which time may change
			return fail(errCertExpired, "chain")
		default:
			return fail(errCertUntrusted, "")
		}
	}
	// x509 takes a certificate without extended key usages as good for
	// any; a client certificate must say it is one.
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fail(errCertUsage, "no client-auth EKU")
	}
	if st.revoked(leaf) {
		return fail(errCertRevoked, "")
	}
	e.notBefore, e.notAfter = leaf.NotBefore, leaf.NotAfter
	for _, c := range chains[0][1:] {
		if c.NotBefore.After(e.notBefore) {
			e.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(e.notAfter) {
			e.notAfter = c.NotAfter
		}
	}
	id, ok := certIdentity(m.identity, leaf)
	if !ok {
		return fail(errCertIdentity, m.identity)
	}
	p := &Principal{
		Subject: id,
		Method:  MethodMTLS,
		Roles:   m.rolesOf(id, leaf),
		Expiry:  e.notAfter,
		Claims:  map[string]any{"x5t#S256": x5t},
		KeyID:   x5t,
		clock:   m.clockOpt,
	}
	p.state = &certState{m: m, certs: e.certs}
	e.p = p.seal()
	return e
}

// certState tells an open request whether its certificate is still good
// under the current files: a CRL or a set of CAs that changed since can end
// a stream the certificate opened (see credentialState).
type certState struct {
	m     *MTLS
	certs []*x509.Certificate
}

func (s *certState) isRevoked(context.Context) (bool, error) {
	now := s.m.now()
	s.m.maybeReload(now)
	e := s.m.check(s.certs, certKey{leaf: s.certs[0]}, now)
	_, err := e.result(now)
	return err != nil, nil
}

// shared implements credentialState: the files change outside the process,
// so open requests are checked at intervals (the files themselves at most
// once per ReloadInterval).
func (s *certState) shared() bool { return true }

func (m *MTLS) rolesOf(id string, leaf *x509.Certificate) []string {
	var roles []string
	add := func(r string) {
		if r != "" && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	for _, r := range m.roles[id] {
		add(r)
	}
	switch m.roleAttribute {
	case "OU":
		for _, r := range leaf.Subject.OrganizationalUnit {
			add(r)
		}
	case "O":
		for _, r := range leaf.Subject.Organization {
			add(r)
		}
	}
	return roles
}

// Thumbprint returns the certificate's SHA-256 thumbprint as RFC 8705 §3.1
// spells it in a token's cnf claim (x5t#S256): the base64url encoding,
// without padding, of the SHA-256 of its DER form.
func Thumbprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// checkBoundCertificate checks that the connection presents the certificate
// a token is bound to (RFC 8705 §3): the leaf's thumbprint is x5t. The TLS
// handshake proved the client holds the certificate's key; a proxy's header
// was checked against the client CAs before it became state (see
// [MTLS] proxy mode). It is what the JWT verifier calls for a token with
// cnf.x5t#S256, so that jwt.go needs nothing else of this file.
func checkBoundCertificate(state *tls.ConnectionState, x5t string) error {
	if state == nil || len(state.PeerCertificates) == 0 {
		return errCertMismatch
	}
	sum := leafSums.sum(state.PeerCertificates[0])
	var want [sha256.Size]byte
	if n, err := base64.RawURLEncoding.Decode(want[:], []byte(x5t)); err != nil || n != sha256.Size {
		return errCertMismatch
	}
	if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
		return errCertMismatch
	}
	return nil
}

// leafSums remembers the SHA-256 of the certificates that bound tokens
// came with, by the certificate as the connection holds it, so that a
// connection's requests hash its certificate once. It is bounded: a full
// memo is emptied.
var leafSums sumMemo

type sumMemo struct {
	mu sync.RWMutex
	m  map[*x509.Certificate][sha256.Size]byte
}

func (s *sumMemo) sum(c *x509.Certificate) [sha256.Size]byte {
	s.mu.RLock()
	sum, ok := s.m[c]
	s.mu.RUnlock()
	if ok {
		return sum
	}
	sum = sha256.Sum256(c.Raw)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= certCacheSize {
		s.m = make(map[*x509.Certificate][sha256.Size]byte)
	}
	s.m[c] = sum
	s.mu.Unlock()
	return sum
}

// certCache remembers the outcome of checking a chain, by the leaf as the
// connection holds it (net/http hands every request of a connection the
// same parsed certificates) or by the SHA-256 of a proxy's header. It is
// bounded: a full cache is emptied.
type certCache struct {
	mu sync.RWMutex
	m  map[certKey]*certEntry
}

type certKey struct {
	leaf *x509.Certificate
	sum  [sha256.Size]byte
}

const certCacheSize = 4096

func (c *certCache) get(k certKey) *certEntry {
	c.mu.RLock()
	e := c.m[k]
	c.mu.RUnlock()
	return e
}

func (c *certCache) put(k certKey, e *certEntry) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= certCacheSize {
		c.m = make(map[certKey]*certEntry)
	}
	c.m[k] = e
	c.mu.Unlock()
}
