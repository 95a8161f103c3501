package authserver

import (
	"strings"
)

// offlineAccess asks for a refresh token; it is never a granted scope.
const offlineAccess = "offline_access"

// validScopeToken reports whether s is a scope-token (RFC 6749 §3.3).
func validScopeToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// parseScope splits a scope parameter at spaces (RFC 6749 §3.3) into a set,
// noting offline_access apart. An empty parameter is an empty set.
func parseScope(param string) (scopes []string, offline bool, ok bool) {
	if len(param) > 4096 {
		return nil, false, false
	}
	for sc := range strings.SplitSeq(param, " ") {
		if sc == "" {
			continue
		}
		if !validScopeToken(sc) {
			return nil, false, false
		}
		if sc == offlineAccess {
			offline = true
			continue
		}
		dup := false
		for _, have := range scopes {
			if have == sc {
				dup = true
				break
			}
		}
		if !dup {
			scopes = append(scopes, sc)
		}
	}
	return scopes, offline, true
}

// orderScopes returns the known scopes of in, without duplicates, in the
// order of Options.Scopes, so that a grant has one spelling.
func (s *Server) orderScopes(in []string) []string {
	out := make([]string, 0, len(in))
	for _, sc := range s.scopes {
		for _, x := range in {
			if x == sc {
				out = append(out, sc)
				break
			}
		}
	}
	return out
}

// grant decides the scopes of a request: the requested ones, each of which
// must be known and allowed, or the defaults when none is requested.
func (s *Server) grant(param string, allowed, defaults []string) (granted []string, offline bool, e *oauthError) {
	req, offline, ok := parseScope(param)
	if !ok {
		return nil, false, errInvalidScope("The scope parameter is malformed.")
	}
	if len(req) == 0 {
		return intersect(defaults, allowed), offline, nil
	}
	for _, sc := range req {
		if !s.scopeSet[sc] {
			return nil, false, errInvalidScope("A requested scope is unknown.")
		}
		if !contains(allowed, sc) {
			return nil, false, errInvalidScope("A requested scope is not allowed for this client.")
		}
	}
	return s.orderScopes(req), offline, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// intersect returns the elements of a that are in b, in a's order.
func intersect(a, b []string) []string {
	out := make([]string, 0, len(a))
	for _, x := range a {
		if contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}
