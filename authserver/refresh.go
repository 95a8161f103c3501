package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/mcpauth/mcpauth"
)

// Store kinds of refresh tokens. A refresh token belongs to a family: the
// grant one authorization made, and every token rotated from it.
const (
	keyRefresh       = "as.refresh"        // "as.refresh:<sha256>": a live refresh token
	keyRefreshUsed   = "as.refresh-used"   // "as.refresh-used:<sha256>": a rotated one, kept to detect reuse
	keyFamily        = "as.family"         // "as.family:<id>": the grant and the access tokens issued from it
	keyFamilyRevoked = "as.family-revoked" // "as.family-revoked:<id>": set once, never unset
)

// maxFamilyTokens bounds the live access tokens a family records.
const maxFamilyTokens = 8

// grantRecord is what a user granted a client: the claims of every token
// of its family.
type grantRecord struct {
	ClientID string   `json:"client_id"`
	Subject  string   `json:"sub"`
	Roles    []string `json:"roles,omitempty"`
	Scopes   []string `json:"scopes"`
	Resource string   `json:"resource"`
}

// family is a token family. Tokens are the access tokens issued from it
// that have not expired, so that revoking the family revokes them too.
type family struct {
	grantRecord
	ID      string   `json:"id"`
	Current string   `json:"current"` // sha256 of the live refresh token
	Tokens  []issued `json:"tokens"`
}

type issued struct {
	JTI string `json:"jti"`
	Exp int64  `json:"exp"` // Unix seconds
}

// refreshRecord is a live refresh token.
type refreshRecord struct {
	Family   string `json:"family"`
	ClientID string `json:"client_id"`
	Expires  int64  `json:"exp"` // Unix nanoseconds
}

// refreshUse is a rotated refresh token: which token replaced it, and when.
type refreshUse struct {
	Family    string `json:"family"`
	ClientID  string `json:"client_id"`
	Successor string `json:"successor"` // sha256 of the token that replaced it
	UsedAt    int64  `json:"used_at"`   // Unix nanoseconds
	// NoGrace marks a token replaced in a grace redemption, whose response
	// was lost: it was never delivered, so presenting it is reuse.
	NoGrace bool `json:"no_grace,omitempty"`
}

// newFamily starts a family for a grant whose first access token is at,
// and returns its first refresh token.
func (s *Server) newFamily(r *http.Request, g *grantRecord, at *accessToken) (token, id string, e *oauthError) {
	id, err := randomToken("")
	if err != nil {
		return "", "", errServer
	}
	f := &family{grantRecord: *g, ID: id, Tokens: []issued{{at.jti, at.exp.Unix()}}}
	token, e = s.issueRefresh(r, f)
	return token, id, e
}

// issueRefresh makes a new refresh token for the family and saves the
// family with it as its current token.
func (s *Server) issueRefresh(r *http.Request, f *family) (string, *oauthError) {
	token, err := randomToken("")
	if err != nil {
		return "", errServer
	}
	rec, _ := json.Marshal(refreshRecord{Family: f.ID, ClientID: f.ClientID, Expires: s.now().Add(s.refreshTTL).UnixNano()})
	if err := s.store.Create(r.Context(), hashKey(keyRefresh, token), rec, s.refreshTTL); err != nil {
		s.keyFault(r, "store unavailable")
		return "", errUnavailable
	}
	prev := f.Current
	f.Current = sha256Hex(token)
	if err := s.saveFamily(r.Context(), f); err != nil {
		s.forget(r, keyRefresh+":"+f.Current)
		f.Current = prev
		s.keyFault(r, "store unavailable")
		return "", errUnavailable
	}
	return token, nil
}

// restoreTimeout bounds the writes that undo half an exchange.
const restoreTimeout = 5 * time.Second

// restoreTaken puts back a code or refresh token that an exchange took
// and then could not complete because the store failed, so that the
// client's retry with the same token works: without it, a fault between
// the take and the last write would lose the client's grant. It runs on a
// context of its own, so that a client that hung up does not cancel it.
// If the store still fails, the token is lost, and the event says so.
func (s *Server) restoreTaken(r *http.Request, key string, value []byte, expires int64) {
	ttl := time.Unix(0, expires).Sub(s.now())
	if ttl <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), restoreTimeout)
	defer cancel()
	if err := s.store.Create(ctx, key, value, ttl); err != nil && !errors.Is(err, mcpauth.ErrExists) {
		s.keyFault(r, "store unavailable: a token taken for an exchange that failed is lost")
	}
}

// forget deletes a record written for an exchange that then failed (a
// refresh token never delivered), on a context of its own. A failure is
// harmless: nobody holds the token, and the record expires.
func (s *Server) forget(r *http.Request, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), restoreTimeout)
	defer cancel()
	_ = s.store.Delete(ctx, key)
}

// failedOnStore reports whether an exchange failed for want of the store
// or a key (so that what it took is put back), not on a refusal.
func failedOnStore(e *oauthError) bool { return e == errUnavailable || e == errServer }

func (s *Server) saveFamily(ctx context.Context, f *family) error {
	now := s.now().Unix()
	live := f.Tokens[:0]
	for _, t := range f.Tokens {
		if t.Exp > now {
			live = append(live, t)
		}
	}
	f.Tokens = live
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return s.store.Set(ctx, keyFamily+":"+f.ID, b, s.refreshTTL+s.accessTTL)
}

var errNoFamily = errors.New("mcpauth: authserver: no such token family")

// loadFamily returns a family that exists and is not revoked.
func (s *Server) loadFamily(ctx context.Context, id string) (*family, error) {
	if _, err := s.store.Get(ctx, keyFamilyRevoked+":"+id); err == nil {
		return nil, errNoFamily
	} else if !errors.Is(err, mcpauth.ErrNotFound) {
		return nil, err
	}
	b, err := s.store.Get(ctx, keyFamily+":"+id)
	if errors.Is(err, mcpauth.ErrNotFound) {
		return nil, errNoFamily
	}
	if err != nil {
		return nil, err
	}
	f := new(family)
	if err := json.Unmarshal(b, f); err != nil || f.ID != id {
		return nil, errors.New("mcpauth: authserver: bad family record")
	}
	return f, nil
}

// revokeFamily revokes a family: its live refresh token and every access
// token issued from it that has not expired. The mark is set first and
// never removed, so that a refresh racing with the revocation finds it.
func (s *Server) revokeFamily(r *http.Request, id, reason string) error {
	ctx := r.Context()
	if err := s.store.Set(ctx, keyFamilyRevoked+":"+id, []byte("1"), s.refreshTTL+s.accessTTL); err != nil {
		return err
	}
	b, err := s.store.Get(ctx, keyFamily+":"+id)
	if errors.Is(err, mcpauth.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var f family
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if err := s.store.Delete(ctx, keyRefresh+":"+f.Current); err != nil {
		return err
	}
	for _, t := range f.Tokens {
		if err := s.revokeAccessToken(ctx, t.JTI, time.Unix(t.Exp, 0)); err != nil {
			return err
		}
	}
	s.record(r, mcpauth.Event{Kind: EventTokenRevoked, Outcome: mcpauth.OutcomeSuccess, ClientID: f.ClientID, Subject: f.Subject, Detail: "family:" + reason})
	return nil
}

// touchClient pushes back the expiry of a registered client that got
// tokens, at most once a day.
func (s *Server) touchClient(r *http.Request, c *client) {
	if c.Source != sourceDynamic {
		return
	}
	now := s.now()
	if now.Unix()-c.Touched < int64(24*time.Hour/time.Second) {
		return
	}
	cc := *c
	cc.Touched = now.Unix()
	b, err := json.Marshal(&cc)
	if err == nil {
		err = s.store.Set(r.Context(), keyClients+":"+c.ID, b, s.registration.ClientTTL)
	}
	if err != nil {
		s.keyFault(r, "store unavailable")
	}
}

// refresh is the refresh token grant (RFC 6749 §6, OAuth 2.1 §4.3): the
// token is rotated, scope may only narrow, and the resource stays the
// grant's. Checks are made before the token is taken, so a request that
// fails changes nothing; a rotated token presented again revokes its
// family (unless RefreshGracePeriod covers it).
func (s *Server) refresh(w http.ResponseWriter, r *http.Request, p params, ca *clientAuth) *oauthError {
	c := ca.c
	if !c.allows(grantRefresh) {
		return errUnauthorizedClient("The client may not use the refresh token grant.")
	}
	tok := p.get("refresh_token")
	if tok == "" {
		return errInvalidRequest("The refresh_token parameter is missing.")
	}
	if len(tok) > 256 {
		return errInvalidGrant("The refresh token is invalid.")
	}
	h := sha256Hex(tok)
	b, err := s.store.Get(r.Context(), keyRefresh+":"+h)
	if errors.Is(err, mcpauth.ErrNotFound) {
		return s.refreshReplayed(w, r, p, c, h)
	}
	if err != nil {
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	var rec refreshRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return errServer
	}
	if s.now().UnixNano() >= rec.Expires {
		return errInvalidGrant("The refresh token has expired.")
	}
	if rec.ClientID != c.ID {
		return errInvalidGrant("The refresh token was issued to another client.")
	}
	f, scopes, e := s.checkRefresh(r, p, rec.Family)
	if e != nil {
		return e
	}
	taken, err := s.store.Take(r.Context(), keyRefresh+":"+h)
	if err != nil {
		if errors.Is(err, mcpauth.ErrNotFound) {
			// Another request rotated it a moment ago.
			return s.refreshReplayed(w, r, p, c, h)
		}
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	if e := s.rotate(w, r, c, f, scopes, []string{h}, rec.Expires); e != nil {
		if failedOnStore(e) {
			s.restoreTaken(r, keyRefresh+":"+h, taken, rec.Expires)
		}
		return e
	}
	return nil
}

// checkRefresh loads the family and decides the scopes of the new access
// token: those asked for, each of which the grant must include.
func (s *Server) checkRefresh(r *http.Request, p params, familyID string) (*family, []string, *oauthError) {
	f, err := s.loadFamily(r.Context(), familyID)
	if errors.Is(err, errNoFamily) {
		return nil, nil, errInvalidGrant("The refresh token is invalid.")
	}
	if err != nil {
		s.keyFault(r, "store unavailable")
		return nil, nil, errUnavailable
	}
	scopes := f.Scopes
	if p.has("scope") {
		req, _, ok := parseScope(p.get("scope"))
		if !ok {
			return nil, nil, errInvalidScope("The scope parameter is malformed.")
		}
		if len(req) > 0 {
			if !subset(req, f.Scopes) {
				return nil, nil, errInvalidScope("A refresh may only narrow the granted scopes.")
			}
			scopes = s.orderScopes(req)
		}
	}
	if rp := p.get("resource"); rp != "" {
		res, e := s.resolveResource(rp)
		if e != nil {
			return nil, nil, e
		}
		if res.raw != f.Resource {
			return nil, nil, errInvalidTarget("The resource does not match the grant.")
		}
	}
	return f, scopes, nil
}

// rotate issues a new access token and refresh token for the family. The
// tokens replaced (the one presented, and in a grace redemption the one
// whose response was lost) are recorded as used, pointing to the new one.
func (s *Server) rotate(w http.ResponseWriter, r *http.Request, c *client, f *family, scopes []string, replaced []string, oldExpires int64) *oauthError {
	at, e := s.mint(r, boundClaims(r, c, mcpauth.TokenClaims{Subject: f.Subject, ClientID: c.ID, Audience: []string{f.Resource}, Scopes: scopes, Roles: f.Roles}))
	if e != nil {
		return e
	}
	f.Tokens = append(f.Tokens, issued{at.jti, at.exp.Unix()})
	// A family keeps at most maxFamilyTokens live access tokens, so that a
	// client refreshing in a loop cannot grow its record: older ones,
	// superseded anyway, are revoked as they drop out.
	for len(f.Tokens) > maxFamilyTokens {
		old := f.Tokens[0]
		if old.Exp > s.now().Unix() {
			if err := s.revokeAccessToken(r.Context(), old.JTI, time.Unix(old.Exp, 0)); err != nil {
				s.keyFault(r, "store unavailable")
				return errUnavailable
			}
		}
		f.Tokens = f.Tokens[1:]
	}
	refresh, e := s.issueRefresh(r, f)
	if e != nil {
		return e
	}
	// Past this point a failure forgets the new token: the caller puts
	// back the one it took, and the client retries with that.
	now := s.now()
	ttl := time.Unix(0, oldExpires).Sub(now)
	if ttl < s.refreshGrace {
		ttl = s.refreshGrace
	}
	if ttl < time.Minute {
		ttl = time.Minute
	}
	// Marked last to first: in a grace redemption, should the mark of the
	// successor be written and the presented token's fail, the presented
	// token still points to the successor, which the caller puts back, and
	// the client's retry is a grace redemption again rather than reuse.
	for i := len(replaced) - 1; i >= 0; i-- {
		h := replaced[i]
		use, _ := json.Marshal(refreshUse{Family: f.ID, ClientID: c.ID, Successor: f.Current, UsedAt: now.UnixNano(), NoGrace: i > 0})
		if err := s.store.Set(r.Context(), keyRefreshUsed+":"+h, use, ttl); err != nil {
			s.forget(r, keyRefresh+":"+f.Current)
			s.keyFault(r, "store unavailable")
			return errUnavailable
		}
	}
	// A revocation that raced with this rotation has set its mark by now,
	// or comes after and revokes these tokens itself.
	if _, err := s.store.Get(r.Context(), keyFamilyRevoked+":"+f.ID); err == nil {
		_ = s.revokeFamily(r, f.ID, "raced")
		return errInvalidGrant("The refresh token is invalid.")
	}
	s.touchClient(r, c)
	s.record(r, mcpauth.Event{Kind: EventTokenRefreshed, Outcome: mcpauth.OutcomeSuccess, ClientID: c.ID, Subject: f.Subject, KeyID: at.jti, Detail: grantRefresh})
	s.writeToken(w, at, scopes, refresh)
	return nil
}

// refreshReplayed answers a refresh token that is not live. A token that
// was rotated is reuse: its family is revoked (OAuth 2.1 §4.3.1), unless
// the same client presents it within RefreshGracePeriod of the rotation
// and the token that replaced it was never used, in which case the client
// lost that response and gets a new pair in its place.
func (s *Server) refreshReplayed(w http.ResponseWriter, r *http.Request, p params, c *client, h string) *oauthError {
	b, err := s.store.Get(r.Context(), keyRefreshUsed+":"+h)
	if errors.Is(err, mcpauth.ErrNotFound) {
		return errInvalidGrant("The refresh token is invalid.")
	}
	if err != nil {
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	var use refreshUse
	if err := json.Unmarshal(b, &use); err != nil {
		return errServer
	}
	if s.refreshGrace > 0 && !use.NoGrace && use.ClientID == c.ID && s.now().Sub(time.Unix(0, use.UsedAt)) <= s.refreshGrace {
		f, scopes, e := s.checkRefresh(r, p, use.Family)
		if e != nil {
			return e
		}
		succ, err := s.store.Take(r.Context(), keyRefresh+":"+use.Successor)
		if err == nil {
			var rec refreshRecord
			_ = json.Unmarshal(succ, &rec)
			e := s.rotate(w, r, c, f, scopes, []string{h, use.Successor}, rec.Expires)
			if e != nil && failedOnStore(e) {
				s.restoreTaken(r, keyRefresh+":"+use.Successor, succ, rec.Expires)
			}
			return e
		}
		if !errors.Is(err, mcpauth.ErrNotFound) {
			s.keyFault(r, "store unavailable")
			return errUnavailable
		}
		// The successor was used: this is reuse after all.
	}
	s.record(r, mcpauth.Event{Kind: EventReuseDetected, Outcome: mcpauth.OutcomeFailure, Reason: "refresh_token_reuse", ClientID: use.ClientID})
	if err := s.revokeFamily(r, use.Family, "refresh_token_reuse"); err != nil {
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	return errInvalidGrant("The refresh token is invalid.")
}
