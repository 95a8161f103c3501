package authserver

import (
	"context"
	"crypto"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/mcpauth"
)

// A Verifier authenticates requests that carry this server's access
// tokens. It is an [mcpauth.Authenticator] for [mcpauth.Require]; its
// principals have Method [mcpauth.MethodOAuth], the token's sub as Subject
// and its roles, scopes and client_id.
//
// It checks tokens with the server's signing keys themselves, not with a
// fetched JWKS: when the keys rotate, it rebuilds its [mcpauth.JWTVerifier]
// with the new set. Revocations are read from the server's Store on every
// request, so a token revoked by any replica sharing the Store stops
// working at once. A resource server in another process that shares the
// Store can verify the same tokens with an [mcpauth.JWTVerifier] whose
// TrustedIssuer has the server's jwks_uri as JWKSURL and whose Store is the
// same Store.
type Verifier struct {
	s         *Server
	audiences []string
	// ownUse accepts certificate-bound tokens without their certificate:
	// for this server's introspection and revocation, whose caller is not
	// the token's holder. Never for a Verifier handed out.
	ownUse bool
	mu     sync.Mutex
	cur    atomic.Pointer[verifierState]
}

type verifierState struct {
	ring *ringState
	v    *mcpauth.JWTVerifier
}

// Verifier returns a verifier for tokens issued for the given audiences
// (resource URIs; a trailing slash is ignored). None means every resource
// of Options.Resources.
func (s *Server) Verifier(audiences ...string) (*Verifier, error) {
	if len(audiences) == 0 {
		for _, r := range s.resources {
			audiences = append(audiences, r.raw)
		}
	}
	v := &Verifier{s: s, audiences: slices.Clone(audiences)}
	if _, err := v.verifier(context.Background()); err != nil {
		return nil, err
	}
	return v, nil
}

// Authenticate implements [mcpauth.Authenticator].
func (v *Verifier) Authenticate(r *http.Request) (*mcpauth.Principal, error) {
	jv, err := v.verifier(r.Context())
	if err != nil {
		return nil, err
	}
	return jv.Authenticate(r)
}

// Verify checks a token and returns its principal; see
// [mcpauth.JWTVerifier.Verify].
func (v *Verifier) Verify(ctx context.Context, token string) (*mcpauth.Principal, error) {
	jv, err := v.verifier(ctx)
	if err != nil {
		return nil, err
	}
	return jv.Verify(ctx, token)
}

// Close releases the verifier.
func (v *Verifier) Close() error {
	if st := v.cur.Load(); st != nil {
		return st.v.Close()
	}
	return nil
}

var errVerifierKeys = fmt.Errorf("mcpauth: authserver: signing keys unavailable: %w", mcpauth.ErrUnavailable)

// verifier returns the JWTVerifier for the current keys. If the keys
// cannot be loaded it keeps using the last ones (their tokens are still
// good); with none yet, requests get 503.
func (v *Verifier) verifier(ctx context.Context) (*mcpauth.JWTVerifier, error) {
	ring, err := v.s.keys.current(ctx)
	st := v.cur.Load()
	if err != nil {
		if st != nil {
			return st.v, nil
		}
		return nil, errVerifierKeys
	}
	if st != nil && st.ring == ring {
		return st.v, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if st := v.cur.Load(); st != nil && st.ring == ring {
		return st.v, nil
	}
	jv, err := v.s.newJWTVerifier(ring, v.audiences, v.ownUse)
	if err != nil {
		return nil, err
	}
	if old := v.cur.Swap(&verifierState{ring: ring, v: jv}); old != nil {
		old.v.Close()
	}
	return jv, nil
}

func (s *Server) newJWTVerifier(ring *ringState, audiences []string, acceptBound bool) (*mcpauth.JWTVerifier, error) {
	keys := make([]crypto.PublicKey, 0, len(ring.published))
	for _, iss := range ring.published {
		keys = append(keys, iss.PublicKey())
	}
	return mcpauth.NewJWTVerifier(mcpauth.JWTVerifierOptions{
		Issuers: []mcpauth.TrustedIssuer{{
			Issuer:                 s.issuer,
			Audiences:              audiences,
			Method:                 mcpauth.MethodOAuth,
			PublicKeys:             keys,
			Algorithms:             []string{s.keys.alg},
			RequireAccessTokenType: true,
			AcceptBoundTokens:      acceptBound,
		}},
		Store: s.store,
		Clock: s.now,
	})
}

// revokeAccessToken records an access token of this server as revoked.
func (s *Server) revokeAccessToken(ctx context.Context, jti string, exp time.Time) error {
	ttl := exp.Sub(s.now())
	if ttl <= 0 {
		return nil // expired: nothing to revoke
	}
	// A minute past exp: the verifier's leeway, and clocks that differ.
	return mcpauth.RevokeToken(ctx, s.store, s.issuer, jti, ttl+time.Minute)
}
