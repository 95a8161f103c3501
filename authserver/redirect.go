package authserver

import (
	"errors"
	"net/url"
	"strings"
)

// maxURILen bounds every URI a request or a registration carries.
const maxURILen = 2048

// dangerousSchemes are never redirect targets, whatever RedirectSchemes
// says: they run code or read local data in the browser.
var dangerousSchemes = map[string]bool{
	"javascript": true, "data": true, "vbscript": true, "file": true, "blob": true,
	"about": true, "filesystem": true, "view-source": true, "ws": true, "wss": true,
}

// A redirectKind says how a redirect URI is matched and answered.
type redirectKind uint8

const (
	// redirectWeb is an https URI: matched exactly, redirected to.
	redirectWeb redirectKind = iota + 1
	// redirectLoopback is an http URI on 127.0.0.1, [::1] or localhost:
	// matched on scheme, host, path and query but not the port (RFC 8252
	// §7.3), redirected to.
	redirectLoopback
	// redirectApp is a private-use scheme of RedirectSchemes: matched
	// exactly, answered with a page that links to it, since a browser
	// stalls silently on a redirect to an app.
	redirectApp
)

var errRedirectURI = errors.New("mcpauth: authserver: redirect URI not allowed")

// classifyRedirect checks a redirect URI against the rules every redirect
// URI follows, registered or presented: https anywhere; http only on a
// loopback host; a private-use scheme only from the allowlist; never a
// fragment, user information, a scheme or host in upper case, or a
// character that is not printable ASCII.
func (s *Server) classifyRedirect(raw string) (redirectKind, error) {
	if raw == "" || len(raw) > maxURILen {
		return 0, errRedirectURI
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c >= 0x7f || c == '#' || c == '\\' {
			return 0, errRedirectURI
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.User != nil || u.Fragment != "" {
		return 0, errRedirectURI
	}
	if u.Scheme != strings.ToLower(u.Scheme) {
		return 0, errRedirectURI
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" || u.Opaque != "" || u.Host != strings.ToLower(u.Host) || !validPort(u.Port()) {
			return 0, errRedirectURI
		}
		return redirectWeb, nil
	case "http":
		host := u.Hostname()
		if u.Opaque != "" || (host != "127.0.0.1" && host != "::1" && host != "localhost") || !validPort(u.Port()) {
			return 0, errRedirectURI
		}
		if strings.Contains(host, ":") && !strings.HasPrefix(u.Host, "[::1]") {
			return 0, errRedirectURI
		}
		return redirectLoopback, nil
	}
	if dangerousSchemes[u.Scheme] {
		return 0, errRedirectURI
	}
	for _, sc := range s.schemes {
		if u.Scheme == sc {
			return redirectApp, nil
		}
	}
	return 0, errRedirectURI
}

func validPort(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n > 0 && n <= 65535
}

// matchRedirect returns the kind of presented if it matches one of the
// registered redirect URIs: exactly, or for a loopback URI on everything
// but the port.
func (s *Server) matchRedirect(registered []string, presented string) (redirectKind, bool) {
	kind, err := s.classifyRedirect(presented)
	if err != nil {
		return 0, false
	}
	for _, reg := range registered {
		if reg == presented {
			return kind, true
		}
	}
	if kind != redirectLoopback {
		return 0, false
	}
	p, _ := url.Parse(presented)
	for _, reg := range registered {
		r, err := url.Parse(reg)
		if err != nil || r.Scheme != "http" {
			continue
		}
		if r.Hostname() == p.Hostname() && r.EscapedPath() == p.EscapedPath() && r.RawQuery == p.RawQuery && r.ForceQuery == p.ForceQuery {
			return kind, true
		}
	}
	return 0, false
}

// withParams returns the redirect URI with the response parameters added
// to its query, keeping the query it has (RFC 6749 §3.1.2).
func withParams(redirectURI string, params url.Values) string {
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
		if strings.HasSuffix(redirectURI, "?") || strings.HasSuffix(redirectURI, "&") {
			sep = ""
		}
	}
	return redirectURI + sep + params.Encode()
}

func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
