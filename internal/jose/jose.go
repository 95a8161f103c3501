// Package jose decodes the JSON and base64url of JOSE objects (RFC 7515,
// RFC 7519) and of policy files strictly: what two parsers could read two
// ways (duplicate members, invalid UTF-8, unpaired surrogates, padding,
// line breaks) is refused rather than resolved.
package jose

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

var b64 = base64.RawURLEncoding.Strict()

// DecodeSegment decodes a base64url segment without padding (RFC 7515 §2),
// strictly: padding, line breaks and non-zero trailing bits are errors.
func DecodeSegment(s string, max int) ([]byte, error) {
	if b64.DecodedLen(len(s)) > max {
		return nil, errors.New("segment too large")
	}
	// Even a Strict encoding skips CR and LF, which would let a token with
	// a line break in it pass as the token without.
	if strings.IndexByte(s, '\n') >= 0 || strings.IndexByte(s, '\r') >= 0 {
		return nil, errors.New("line break")
	}
	buf := make([]byte, b64.DecodedLen(len(s)))
	n, err := b64.Decode(buf, []byte(s))
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// DecodeObject decodes a JSON object and refuses one with a duplicate member
// name in any of its objects, however deeply nested (RFC 7519 §4 allows
// refusing; taking the last, as encoding/json does, lets two parsers read one
// token differently, and nested claims such as Keycloak's realm_access.roles
// name roles), or nested more than maxDepth deep.
func DecodeObject(raw []byte, maxDepth int) (map[string]any, error) {
	// encoding/json turns invalid UTF-8 into U+FFFD, so "alice\xff" and
	// "alice\xfe" would be one subject; RFC 7519 §7.2 requires UTF-8.
	if !utf8.Valid(raw) {
		return nil, errors.New("invalid UTF-8")
	}
	members, err := scanObject(raw, maxDepth)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, errors.New("bad JSON")
	}
	// scanObject counted the members as written; the maps hold them by
	// their decoded names, so "sub" and "s\u0075b" count once in them.
	if countMembers(m) != members {
		return nil, errors.New("duplicate member")
	}
	return m, nil
}

// scanObject counts the members of every JSON object in raw, the top-level
// one and those nested in it, and checks the nesting depth. It trusts
// encoding/json to validate the rest.
func scanObject(raw []byte, maxDepth int) (members int, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '{' {
		return 0, errors.New("not a JSON object")
	}
	// Bit d of inObject is set when the container at depth d is an object
	// (not an array), where a string after '{' or ',' is a member name.
	var inObject uint32
	depth := 0
	expectKey := false
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '"':
			if expectKey {
				members++
				expectKey = false
			}
			// Skip the string.
			for i++; i < len(raw) && raw[i] != '"'; i++ {
				if raw[i] != '\\' {
					continue
				}
				if i++; i >= len(raw) || raw[i] != 'u' {
					continue
				}
				// encoding/json turns an escaped UTF-16 surrogate that is
				// not half of a pair into U+FFFD, as it does invalid UTF-8:
				// "alice\ud800" and "alice\udbff" would be one subject.
				switch r := hex4(raw[i+1:]); {
				case r >= 0xdc00 && r <= 0xdfff:
					return 0, errors.New("unpaired surrogate")
				case r >= 0xd800 && r <= 0xdbff:
					if len(raw) < i+11 || raw[i+5] != '\\' || raw[i+6] != 'u' {
						return 0, errors.New("unpaired surrogate")
					}
					if low := hex4(raw[i+7:]); low < 0xdc00 || low > 0xdfff {
						return 0, errors.New("unpaired surrogate")
					}
					i += 10 // the pair's last hex digit
				}
			}
		case '{', '[':
			depth++
			if depth > maxDepth || depth >= 32 {
				return 0, errors.New("JSON nested too deep")
			}
			expectKey = raw[i] == '{'
			if expectKey {
				inObject |= 1 << depth
			} else {
				inObject &^= 1 << depth
			}
		case '}', ']':
			if depth--; depth < 0 {
				return 0, errors.New("bad JSON")
			}
			expectKey = false
		case ',':
			expectKey = inObject&(1<<depth) != 0
		}
	}
	return members, nil
}

// hex4 reads the four hex digits of a \u escape, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// countMembers counts the members of the decoded object v and of every
// object nested in it. scanObject bounds the depth of the recursion.
func countMembers(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		n = len(v)
		for _, e := range v {
			n += countMembers(e)
		}
	case []any:
		for _, e := range v {
			n += countMembers(e)
		}
	}
	return n
}

// NumericDate reads a NumericDate claim (RFC 7519 §2): seconds since the
// epoch, possibly fractional. present is false when the claim is absent; ok
// is false when it is not a number.
func NumericDate(claims map[string]any, name string) (t time.Time, present, ok bool) {
	v, present := claims[name]
	if !present {
		return time.Time{}, false, true
	}
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) {
		return time.Time{}, true, false
	}
	// Clamp to what time.Time holds comfortably; a token that claims to be
	// valid until the year 292277026596 is treated as valid until 10000.
	const maxSec = 253402300799 // 9999-12-31T23:59:59Z
	switch {
	case f > maxSec:
		f = maxSec
	case f < -maxSec:
		f = -maxSec
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, true
}

// Audience reads the aud claim: a string or an array of strings (RFC 7519
// §4.1.3). ok is false for any other shape.
func Audience(v any) ([]string, bool) {
	switch a := v.(type) {
	case nil:
		return nil, true
	case string:
		if a == "" {
			return nil, true
		}
		return []string{a}, true
	case []any:
		out := make([]string, 0, len(a))
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// FoldKey maps each rune of s to the least rune of its Unicode simple
// folding orbit, so that two strings are equal under strings.EqualFold
// exactly when their FoldKeys are equal.
func FoldKey(s string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, s)
}
