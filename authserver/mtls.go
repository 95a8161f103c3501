package authserver

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpauth/mcpauth"
)

// Client authentication with certificates (RFC 8705 §2).
const (
	authTLS        = "tls_client_auth"
	authSelfSigned = "self_signed_tls_client_auth"
)

// TLSClientAuth names the certificate a client authenticates with under
// tls_client_auth (RFC 8705 §2.1): one issued by a CA the TLS layer trusts,
// whose subject or subject alternative name is the one registered. Set
// exactly one field.
type TLSClientAuth struct {
	// SubjectDN is the certificate's subject distinguished name, as Go's
	// pkix.Name.String writes it (RFC 2253 order: "CN=demo-client,O=Example").
	SubjectDN string
	// DNS, URI and Email are a subject alternative name of that kind. DNS
	// names and an email's domain are compared without regard to case.
	DNS   string
	URI   string
	Email string
}

// usesTLS reports whether the client authenticates with a certificate.
func (c *client) usesTLS() bool {
	return c.AuthMethod == authTLS || c.AuthMethod == authSelfSigned
}

// setTLSAuth configures a pre-registered client's certificate
// authentication from in.
func (c *client) setTLSAuth(in *Client) error {
	n := 0
	if a := in.TLSClientAuth; a != nil {
		for _, v := range []string{a.SubjectDN, a.DNS, a.URI, a.Email} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("set exactly one field of TLSClientAuth")
		}
		if a.URI != "" {
			if _, err := url.Parse(a.URI); err != nil {
				return fmt.Errorf("TLSClientAuth.URI is not a URI")
			}
		}
		c.AuthMethod = authTLS
		c.TLSSubjectDN, c.TLSDNS, c.TLSURI, c.TLSEmail = a.SubjectDN, strings.ToLower(a.DNS), a.URI, lowerDomain(a.Email)
	}
	if len(in.CertificateThumbprints) > 0 {
		if n > 0 {
			return fmt.Errorf("set TLSClientAuth or CertificateThumbprints, not both")
		}
		for _, t := range in.CertificateThumbprints {
			if b, err := base64.RawURLEncoding.DecodeString(t); err != nil || len(b) != 32 {
				return fmt.Errorf("certificate thumbprint %q is not a base64url SHA-256", t)
			}
		}
		c.AuthMethod = authSelfSigned
		c.CertThumbprints = append([]string(nil), in.CertificateThumbprints...)
	}
	return nil
}

func lowerDomain(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return email
	}
	return email[:at+1] + strings.ToLower(email[at+1:])
}

// clientCertificate checks the certificate of the request's connection
// against what client c registered, and returns its x5t#S256. For
// tls_client_auth the TLS layer must have verified its chain (see
// [mcpauth.MTLS.TLSConfig]); for self_signed_tls_client_auth the
// certificate is the registered one, whatever its issuer. Either way it
// must be valid now.
func (s *Server) clientCertificate(r *http.Request, c *client) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false
	}
	leaf := r.TLS.PeerCertificates[0]
	now := s.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return "", false
	}
	x5t := mcpauth.Thumbprint(leaf)
	switch c.AuthMethod {
	case authTLS:
		if len(r.TLS.VerifiedChains) == 0 || !c.namesCertificate(leaf) {
			return "", false
		}
	case authSelfSigned:
		found := 0
		for _, t := range c.CertThumbprints {
			found |= subtle.ConstantTimeCompare([]byte(t), []byte(x5t))
		}
		if found != 1 {
			return "", false
		}
	default:
		return "", false
	}
	return x5t, true
}

// namesCertificate reports whether leaf has the subject or the subject
// alternative name that c registered.
func (c *client) namesCertificate(leaf *x509.Certificate) bool {
	switch {
	case c.TLSSubjectDN != "":
		return leaf.Subject.String() == c.TLSSubjectDN
	case c.TLSDNS != "":
		for _, d := range leaf.DNSNames {
			if strings.ToLower(strings.TrimSuffix(d, ".")) == c.TLSDNS {
				return true
			}
		}
	case c.TLSURI != "":
		for _, u := range leaf.URIs {
			if u.String() == c.TLSURI {
				return true
			}
		}
	case c.TLSEmail != "":
		for _, e := range leaf.EmailAddresses {
			if lowerDomain(e) == c.TLSEmail {
				return true
			}
		}
	}
	return false
}

// boundClaims binds the claims of an access token for c to the
// certificate c authenticated with on r (RFC 8705 §3: cnf.x5t#S256), when
// it authenticates with one.
func boundClaims(r *http.Request, c *client, claims mcpauth.TokenClaims) mcpauth.TokenClaims {
	if c == nil || !c.usesTLS() || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return claims
	}
	extra := make(map[string]any, len(claims.Extra)+1)
	for k, v := range claims.Extra {
		extra[k] = v
	}
	extra["cnf"] = map[string]any{"x5t#S256": mcpauth.Thumbprint(r.TLS.PeerCertificates[0])}
	claims.Extra = extra
	return claims
}

// mtlsAliases are the endpoints published under mtls_endpoint_aliases
// (RFC 8705 §5), below Options.MTLSBaseURL.
func (s *Server) mtlsAliases() map[string]string {
	if s.mtlsBase == "" {
		return nil
	}
	m := map[string]string{
		"token_endpoint":         s.mtlsBase + s.issuerPath + pathToken,
		"revocation_endpoint":    s.mtlsBase + s.issuerPath + pathRevoke,
		"introspection_endpoint": s.mtlsBase + s.issuerPath + pathIntrospect,
	}
	return m
}

// checkMTLSBase validates Options.MTLSBaseURL: an https origin.
func checkMTLSBase(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("mcpauth: authserver: MTLSBaseURL %q is not an https origin (scheme and host, no path)", raw)
	}
	return "https://" + u.Host, nil
}
