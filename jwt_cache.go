package mcpauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"time"
)

// revokedKey names a revoked token in the [Store]: "revoked:" and the hex
// SHA-256 of its revocation ID, so that a key is short whatever the token
// says.
func revokedKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "revoked:" + hex.EncodeToString(sum[:])
}

// cacheEntry is a verified token in the JWT verifier's cache.
type cacheEntry struct {
	principal    *Principal // sealed: shared by every request with the token
	revocationID string
	x5t          string // the certificate the token is bound to, if any
}

// RevokeToken records in store that the token of issuer with the given jti
// is revoked, for ttl (until the token has expired, leeway included; zero:
// for good). Every [JWTVerifier] whose
// Store is store refuses it from then on, cached or not, with 401
// (ErrRevoked). It is for an authorization server, or an operator's tool,
// that knows a token by its jti; a verifier that holds the token itself
// calls [JWTVerifier.Revoke].
func RevokeToken(ctx context.Context, store Store, issuer, jti string, ttl time.Duration) error {
	if store == nil || jti == "" || ttl < 0 {
		return errors.New("mcpauth: RevokeToken needs a store, a jti and a ttl of zero or more")
	}
	if err := store.Set(ctx, revokedKey(jtiRevocationID(issuer, jti)), nil, ttl); err != nil {
		return err
	}
	notifyRevoked()
	return nil
}

// jwtState is what an open request of a token asks whether the token has
// been revoked since (see credentialState).
type jwtState struct {
	store       Store
	id          string // the token's revocation ID
	sharedStore bool
	// read is the last read of the store that found the token not
	// revoked. The watcher of open requests reads at every check; a
	// notification's check (recentlyValid) takes a recent read as its
	// answer, so that an update to many sessions is not a store read
	// each.
	read atomic.Pointer[stateRead]
}

// stateRead is when a read found a credential not revoked, and the count
// of revocations in this process just before it.
type stateRead struct {
	at  time.Time
	gen uint64
}

func (s *jwtState) isRevoked(ctx context.Context) (bool, error) {
	gen := revocationGeneration() // before the read: a revocation during it makes the read stale
	_, err := s.store.Get(ctx, revokedKey(s.id))
	switch {
	case err == nil:
		s.read.Store(nil)
		return true, nil
	case errors.Is(err, ErrNotFound):
		s.read.Store(&stateRead{at: time.Now(), gen: gen})
		return false, nil
	}
	return false, err
}

// recentlyValid reports whether a read within maxAge found the token not
// revoked, with no revocation in this process since: one here (Revoke,
// RevokeToken) takes effect at once, one recorded by another replica
// within maxAge.
func (s *jwtState) recentlyValid(maxAge time.Duration) bool {
	r := s.read.Load()
	return r != nil && r.gen == revocationGeneration() && time.Since(r.at) < maxAge
}

func (s *jwtState) shared() bool { return s.sharedStore }

// jtiRevocationID is the revocation ID of a token with a jti.
func jtiRevocationID(issuer, jti string) string { return "jti:" + issuer + "#" + jti }
