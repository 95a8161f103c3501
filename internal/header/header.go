// Package header parses credential headers strictly and without allocating.
package header

import (
	"net/http"
	"strings"
)

// The headers mcpauth reads, in the canonical form net/http stores them
// under, so that a map lookup finds them without canonicalising.
const (
	Authorization = "Authorization"
	APIKey        = "X-Api-Key" // X-API-Key
	RequestID     = "X-Request-Id"
)

// Credentials reports how many credential headers h carries: each
// Authorization and X-API-Key line counts. More than one makes a request
// ambiguous, whatever the authenticators' order.
func Credentials(h http.Header) int {
	return len(h[Authorization]) + len(h[APIKey])
}

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
	token, present, ok, canonical, _ = BearerJWT(h)
	return token, present, ok, canonical
}

// BearerJWT is [Bearer], and also reports whether the token looks like a
// JWT (see [LooksLikeJWT]), from the one pass over the token that checks it
// is a valid credential.
func BearerJWT(h http.Header) (token string, present, ok, canonical, jwt bool) {
	vals := h["Authorization"]
	if len(vals) == 0 {
		return "", false, false, false, false
	}
	if len(vals) > 1 {
		return "", true, false, false, false
	}
	v := vals[0]
	const scheme = "bearer"
	i := 0
	for i < len(v) && isSpace(v[i]) {
		i++
	}
	if len(v)-i < len(scheme)+1 {
		return "", true, false, false, false
	}
	for j := 0; j < len(scheme); j++ {
		if lower(v[i+j]) != scheme[j] {
			return "", true, false, false, false
		}
	}
	canonical = i == 0 && v[:len(scheme)] == "Bearer"
	i += len(scheme)
	if !isSpace(v[i]) {
		return "", true, false, false, false
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
	if len(token) == 0 || len(token) > MaxCredentialLen {
		return "", true, false, false, false
	}
	cls := classes(token)
	if cls&notToken != 0 {
		return "", true, false, false, false
	}
	return token, true, true, canonical, cls&notJWT == 0 && jwtShape(token)
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
	return classes(s)&notToken == 0
}

// LooksLikeJWT reports whether s has the shape of a JWS compact
// serialization: three non-empty base64url segments separated by dots.
// Bearer values are routed by this shape, so that an API-key authenticator
// leaves JWTs to the JWT verifier and the other way round. Every bearer
// request goes through it, with tokens of up to a few KiB: it costs three
// IndexByte calls and one table lookup per byte.
func LooksLikeJWT(s string) bool {
	return jwtShape(s) && classes(s)&notJWT == 0
}

// jwtShape reports whether s has exactly two dots and no empty segment,
// whatever its other bytes. Most bearer values that are not JWTs have no
// dot at all, which the first IndexByte finds out.
func jwtShape(s string) bool {
	dot1 := strings.IndexByte(s, '.')
	if dot1 <= 0 {
		return false
	}
	rest := s[dot1+1:]
	dot2 := strings.IndexByte(rest, '.')
	if dot2 <= 0 {
		return false
	}
	last := rest[dot2+1:]
	return len(last) > 0 && strings.IndexByte(last, '.') < 0
}

// The classes of a byte, as bits: a credential holds no byte of class
// notToken, a JWS compact serialization no byte of class notJWT.
const (
	notToken = 1 << iota // a control character, a space, DEL or not ASCII
	notJWT               // neither base64url (RFC 4648 §5) nor '.'
)

var class = func() (t [256]uint8) {
	for c := range 256 {
		if c <= ' ' || c >= 0x7f {
			t[c] |= notToken
		}
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			t[c] |= notJWT
		}
	}
	return t
}()

// classes returns the union of the classes of the bytes of s. It has no
// branch that depends on the bytes, and four independent accumulators, so
// that it runs at the speed of the loads.
func classes(s string) uint8 {
	var a, b, c, d uint8
	for len(s) >= 4 {
		a |= class[s[0]]
		b |= class[s[1]]
		c |= class[s[2]]
		d |= class[s[3]]
		s = s[4:]
	}
	for i := 0; i < len(s); i++ {
		a |= class[s[i]]
	}
	return a | b | c | d
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
