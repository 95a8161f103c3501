package mcpauth

// OAuthCacheLen returns how many introspection answers v's caches hold,
// positive and negative, expired ones included.
func OAuthCacheLen(v *OAuthVerifier) int {
	st := v.state.Load()
	if st == nil || st.introspect == nil || st.introspect.active == nil {
		return 0
	}
	return st.introspect.active.len() + st.introspect.refused.len()
}

// OAuthWaiting returns how many requests wait on another request's
// introspection of the same token.
func OAuthWaiting(v *OAuthVerifier) int {
	st := v.state.Load()
	if st == nil || st.introspect == nil {
		return 0
	}
	return int(st.introspect.calls.waiting.Load())
}

// The unexported error classes the OAuth tests expect, by name.
var (
	ClassTokenAlgorithm   = errTokenAlgorithm
	ClassTokenAudience    = errTokenAudience
	ClassTokenBound       = errTokenBound
	ClassTokenExpired     = errTokenExpired
	ClassTokenInactive    = errTokenInactive
	ClassTokenIssuer      = errTokenIssuer
	ClassTokenMalformed   = errTokenMalformed
	ClassTokenNotYetValid = errTokenNotYetValid
	ClassTokenType        = errTokenType
)
