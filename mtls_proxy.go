package mcpauth

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

var (
	errCertProxy  error = &errorClass{msg: "mcpauth: client certificate header from an untrusted address", reason: "untrusted_proxy_header", desc: "The client certificate header is not accepted from this address.", parent: ErrMalformed}
	errCertHeader error = &errorClass{msg: "mcpauth: malformed client certificate header", reason: "bad_cert_header", desc: "The client certificate header is malformed.", parent: ErrMalformed}
)

// envoyHeader is Envoy's client certificate header, in canonical form.
const envoyHeader = "X-Forwarded-Client-Cert"

// maxProxyHeader bounds the client certificate header: a URL-encoded chain
// of a few certificates is well under it.
const maxProxyHeader = 32 << 10

// maxProxyChain bounds the certificates a header may carry.
const maxProxyChain = 8

func (m *MTLS) setupProxy(name string, proxies []netip.Prefix) error {
	if name == "" && len(proxies) == 0 {
		return nil
	}
	if name == "" || len(proxies) == 0 {
		return errors.New("mcpauth: mTLS: set both ProxyHeader and TrustedProxies, or neither")
	}
	m.proxyHeader = http.CanonicalHeaderKey(name)
	if m.proxyHeader == "Authorization" || m.proxyHeader == "X-Api-Key" {
		return fmt.Errorf("mcpauth: mTLS: ProxyHeader %q is a credential header", name)
	}
	for _, p := range proxies {
		n, err := normalProxy(p)
		if err != nil {
			return fmt.Errorf("mcpauth: mTLS: TrustedProxies: %v: %w", p, err)
		}
		m.proxies = append(m.proxies, n)
	}
	return nil
}

// normalProxy puts a proxy prefix in one normal form: IPv4 as IPv4 (an
// IPv4-mapped IPv6 prefix is written as the IPv4 one), no zone, masked.
func normalProxy(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, errors.New("not a valid prefix")
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return p, errors.New("an IPv4-mapped prefix shorter than /96")
		}
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// fromProxy reports whether remoteAddr (a request's RemoteAddr, host and
// port) is a trusted proxy's.
func (m *MTLS) fromProxy(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	var a netip.Addr
	if err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(remoteAddr); err != nil {
		return false
	}
	a = a.WithZone("").Unmap()
	for _, p := range m.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// connectionChecker is what [Require] asks, before any authenticator runs,
// for the client certificate of a request: the request as the
// authenticators should see it (with the proxy's certificate as its TLS
// state), or the refusal of a certificate header it must not take.
type connectionChecker interface {
	connection(r *http.Request) (*http.Request, error)
}

// connection implements connectionChecker. Without proxy mode it changes
// nothing. In proxy mode a request from a trusted proxy gets the header's
// certificate (checked like a presented one) as r.TLS's peer certificate,
// or none without the header: the proxy's own certificate, if it presents
// one to this server, is not the client's. The header from any other
// address is refused, whether or not the request carries another
// credential.
func (m *MTLS) connection(r *http.Request) (*http.Request, error) {
	if m == nil || m.proxyHeader == "" {
		return r, nil
	}
	vals, present := r.Header[m.proxyHeader]
	if !m.fromProxy(r.RemoteAddr) {
		if present {
			return nil, failure(MethodMTLS, errCertProxy, "", "")
		}
		return r, nil
	}
	r2 := *r
	if r.TLS != nil {
		cs := *r.TLS
		cs.PeerCertificates, cs.VerifiedChains = nil, nil
		r2.TLS = &cs
	}
	if !present || len(vals) == 1 && vals[0] == "" {
		return &r2, nil
	}
	if len(vals) != 1 || len(vals[0]) > maxProxyHeader {
		return nil, failure(MethodMTLS, errCertHeader, "", "size or count")
	}
	key := certKey{sum: sha256.Sum256([]byte(vals[0]))}
	now := m.now()
	m.maybeReload(now)
	st := m.state.Load()
	e := m.cache.get(key)
	if e == nil || e.gen != st.gen {
		certs, err := m.parseProxyHeader(vals[0])
		if err != nil {
			return nil, failure(MethodMTLS, errCertHeader, "", err.Error())
		}
		e = m.verify(st, certs, now)
		m.cache.put(key, e)
		// Authenticate finds the same outcome by the leaf.
		m.cache.put(certKey{leaf: certs[0]}, e)
	}
	if _, err := e.result(now); err != nil {
		return nil, err
	}
	cs := tls.ConnectionState{HandshakeComplete: true, PeerCertificates: e.certs}
	if r.TLS != nil {
		cs = *r2.TLS
		cs.PeerCertificates = e.certs
	}
	r2.TLS = &cs
	return &r2, nil
}

// parseProxyHeader reads the certificates of a proxy's header value.
func (m *MTLS) parseProxyHeader(v string) ([]*x509.Certificate, error) {
	encoded := v
	if m.proxyHeader == envoyHeader {
		var err error
		if encoded, err = xfccCert(v); err != nil {
			return nil, err
		}
	}
	raw, err := url.PathUnescape(strings.TrimSpace(encoded))
	if err != nil {
		return nil, errors.New("bad URL encoding")
	}
	b := []byte(raw)
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" || len(certs) == maxProxyChain {
			return nil, errors.New("not a certificate chain")
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, errors.New("bad certificate")
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 || strings.TrimSpace(string(b)) != "" {
		return nil, errors.New("no certificate")
	}
	return certs, nil
}

// xfccCert returns the Chain, or else the Cert, of the last element of an
// Envoy X-Forwarded-Client-Cert value: elements are separated by commas,
// key=value pairs by semicolons, and a value may be quoted (with
// backslash escapes), so that commas, semicolons and equal signs inside
// quotes are part of it. The last element is the one the proxy next to this
// server added; run Envoy with forward_client_cert_details SANITIZE_SET so
// that it is the only one (with APPEND_FORWARD a client's own header would
// come through when it presents no certificate).
func xfccCert(v string) (string, error) {
	var elements [][][2]string
	var pairs [][2]string
	var key, val strings.Builder
	inKey, quoted, escaped, wasQuoted := true, false, false, false
	endPair := func() error {
		k := strings.TrimSpace(key.String())
		if k == "" && val.Len() == 0 && !wasQuoted {
			return nil
		}
		if k == "" || inKey {
			return errors.New("bad XFCC pair")
		}
		val := val.String()
		if !wasQuoted {
			val = strings.TrimSpace(val)
		}
		pairs = append(pairs, [2]string{k, val})
		return nil
	}
	reset := func() {
		key.Reset()
		val.Reset()
		inKey, wasQuoted = true, false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			val.WriteByte(c)
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case quoted && c == '"':
			quoted = false
		case quoted:
			val.WriteByte(c)
		case c == '"' && !inKey && strings.TrimSpace(val.String()) == "" && !wasQuoted:
			val.Reset()
			quoted, wasQuoted = true, true
		case c == '=' && inKey:
			inKey = false
		case c == ';' || c == ',':
			if err := endPair(); err != nil {
				return "", err
			}
			reset()
			if c == ',' {
				elements = append(elements, pairs)
				pairs = nil
			}
		case inKey:
			key.WriteByte(c)
		case wasQuoted:
			if c != ' ' && c != '\t' {
				return "", errors.New("bad XFCC quoting")
			}
		default:
			val.WriteByte(c)
		}
	}
	if quoted || escaped {
		return "", errors.New("bad XFCC quoting")
	}
	if err := endPair(); err != nil {
		return "", err
	}
	elements = append(elements, pairs)
	last := elements[len(elements)-1]
	var cert, chain string
	for _, p := range last {
		switch {
		case strings.EqualFold(p[0], "Chain"):
			chain = p[1]
		case strings.EqualFold(p[0], "Cert"):
			cert = p[1]
		}
	}
	switch {
	case chain != "":
		return chain, nil
	case cert != "":
		return cert, nil
	}
	return "", errors.New("no Cert in the last XFCC element")
}
