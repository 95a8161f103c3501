// Package header parses credential headers strictly and without allocating.
package header

import (
	"net/http"
	"strings"
)

// MaxCredentialLen bounds a credential read from a header. Longer values are
// rejected before any hashing or parsing.
const MaxCredentialLen = 8 << 10

// Bearer extracts the token of an "Authorization: Bearer <token>" header
// (RFC 6750 §2.1). The scheme is matched without regard to case, and spaces
// or tabs around the token are tolerated, since clients disagree on them.
//
// present reports whether the request has an Authorization header at all.
// ok is false when it has none, more than one, another scheme, or a token
// that is empty, contains white space or a control character, or is longer
// than MaxCredentialLen. canonical reports whether the header is exactly
// "Bearer <token>" with a single space, the form go-sdk's own parser accepts.
func Bearer(h http.Header) (token string, present, ok, canonical bool) {
	vals := h["Authorization"]
	if len(vals) == 0 {
		return "", false, false, false
	}
	if len(vals) > 1 {
		return "", true, false, false
	}
	v := vals[0]
	const scheme = "bearer"
	i := 0
	for i < len(v) && isSpace(v[i]) {
		i++
	}
	if len(v)-i < len(scheme)+1 {
		return "", true, false, false
	}
	for j := 0; j < len(scheme); j++ {
		if lower(v[i+j]) != scheme[j] {
			return "", true, false, false
		}
	}
	canonical = i == 0 && v[:len(scheme)] == "Bearer"
	i += len(scheme)
	if !isSpace(v[i]) {
		return "", true, false, false
	}
	start := i
	for i < len(v) && isSpace(v[i]) {
		i++
	}
	canonical = canonical && i == start+1 && v[start] == ' '
	end := len(v)
	for end > i && isSpace(v[end-1]) {
		end--
	}
	canonical = canonical && end == len(v)
	token = v[i:end]
	if !Token(token) {
		return "", true, false, false
	}
	return token, true, true, canonical
}

// Canonical reports whether h has exactly one Authorization header of the
// form "Bearer <token>", with a single space and a valid token: the form
// go-sdk's RequireBearerToken accepts, and the same answer Bearer gives as
// its canonical result, at a fraction of the cost.
func Canonical(h http.Header) bool {
	vals := h["Authorization"]
	return len(vals) == 1 && len(vals[0]) > len("Bearer ") && vals[0][:len("Bearer ")] == "Bearer " && Token(vals[0][len("Bearer "):])
}

// Single returns the value of a header that must appear once, trimmed of
// surrounding spaces and tabs. present reports whether the header appears at
// all; ok is false when it appears more than once or its value is not a valid
// credential (see Token).
func Single(h http.Header, name string) (value string, present, ok bool) {
	vals := h[name]
	if len(vals) == 0 {
		return "", false, false
	}
	if len(vals) > 1 {
		return "", true, false
	}
	v := vals[0]
	start, end := 0, len(v)
	for start < end && isSpace(v[start]) {
		start++
	}
	for end > start && isSpace(v[end-1]) {
		end--
	}
	v = v[start:end]
	if !Token(v) {
		return "", true, false
	}
	return v, true, true
}

// Token reports whether s can be a credential: non-empty, at most
// MaxCredentialLen bytes, and only printable ASCII without spaces.
func Token(s string) bool {
	if len(s) == 0 || len(s) > MaxCredentialLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// LooksLikeJWT reports whether s has the shape of a JWS compact
// serialization: three non-empty base64url segments separated by dots.
// Bearer values are routed by this shape, so that an API-key authenticator
// leaves JWTs to the JWT verifier and the other way round.
func LooksLikeJWT(s string) bool {
	// Most bearer values that are not JWTs have no dot at all; IndexByte
	// finds that out faster than the loop below.
	if strings.IndexByte(s, '.') < 0 {
		return false
	}
	dots := 0
	seg := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if seg == 0 {
				return false
			}
			dots++
			seg = 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			seg++
		default:
			return false
		}
	}
	return dots == 2 && seg > 0
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
