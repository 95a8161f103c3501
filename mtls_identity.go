package mcpauth

import (
	"crypto/x509"
	"encoding/asn1"
	"strings"
)

// certIdentity reads the identity of kind from a certificate, in normal
// form. ok is false when the certificate holds none, or more than one.
func certIdentity(kind string, c *x509.Certificate) (string, bool) {
	switch kind {
	case "dns":
		if len(c.DNSNames) != 1 {
			return "", false
		}
		return normalIdentity(kind, c.DNSNames[0])
	case "email":
		if len(c.EmailAddresses) != 1 {
			return "", false
		}
		return normalIdentity(kind, c.EmailAddresses[0])
	case "spiffe":
		// An X.509 SVID has exactly one URI SAN, its SPIFFE ID.
		if len(c.URIs) != 1 {
			return "", false
		}
		u := c.URIs[0]
		if u.Scheme != "spiffe" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
			u.RawPath != "" || u.ForceQuery || u.OmitHost {
			return "", false
		}
		return normalIdentity(kind, "spiffe://"+u.Host+u.Path)
	default: // "cn"
		var cn string
		n := 0
		for _, atv := range c.Subject.Names {
			if atv.Type.Equal(oidCommonName) {
				n++
				cn, _ = atv.Value.(string)
			}
		}
		if n != 1 {
			return "", false
		}
		return normalIdentity(kind, cn)
	}
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// maxIdentityLen bounds an identity: it becomes a Subject, a UserID and a
// field of audit events.
const maxIdentityLen = 512

// normalIdentity brings an identity of kind to its one normal form, or
// reports that it is not one, so that roles are looked up, and sessions
// bound, on one spelling.
func normalIdentity(kind, s string) (string, bool) {
	if s == "" || len(s) > maxIdentityLen {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return "", false
		}
	}
	switch kind {
	case "dns":
		s = strings.ToLower(strings.TrimSuffix(s, "."))
		if !dnsName(s) {
			return "", false
		}
		return s, true
	case "email":
		at := strings.LastIndexByte(s, '@')
		if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t") {
			return "", false
		}
		domain := strings.ToLower(s[at+1:])
		if !dnsName(domain) {
			return "", false
		}
		return s[:at+1] + domain, true
	case "spiffe":
		return spiffeID(s)
	default:
		return s, true
	}
}

// dnsName reports whether s is a lower-case DNS name of letters, digits and
// hyphens, without a wildcard or an empty label.
func dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// spiffeID checks the form of a SPIFFE ID (the SPIFFE-ID specification,
// §2): "spiffe://", a trust domain of lower-case letters, digits, '.', '-'
// and '_', and a path of segments of letters, digits, '.', '-' and '_',
// none empty, "." or "..", without a trailing slash. The scheme and trust
// domain are matched without regard to case and written in lower case, as
// the specification says they are compared.
func spiffeID(s string) (string, bool) {
	const scheme = "spiffe://"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return "", false
	}
	rest := s[len(scheme):]
	td, path, _ := strings.Cut(rest, "/")
	td = strings.ToLower(td)
	if td == "" || len(td) > 255 {
		return "", false
	}
	for i := 0; i < len(td); i++ {
		if c := td[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", false
		}
	}
	if len(rest) > len(td) { // there is a path
		for seg := range strings.SplitSeq(path, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", false
			}
			for i := 0; i < len(seg); i++ {
				if c := seg[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
					return "", false
				}
			}
		}
		return scheme + td + "/" + path, true
	}
	return scheme + td, true
}
