package authserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/mcpauth/mcpauth"
)

// codeUse records a redeemed authorization code, under
// "as.code-used:<sha256>", so that a replay revokes what it issued
// (RFC 6749 §4.1.2, §10.5).
type codeUse struct {
	ClientID string `json:"client_id"`
	Family   string `json:"family,omitempty"`
	JTI      string `json:"jti"`
	JTIExp   int64  `json:"jti_exp"` // Unix seconds
}

// authorizationCode is the authorization code grant (RFC 6749 §4.1.3,
// RFC 7636 §4.6). Every check is made on a copy of the code before it is
// taken, so that a request that fails changes nothing; the code is then
// taken atomically, so that of two requests racing, one gets tokens.
func (s *Server) authorizationCode(w http.ResponseWriter, r *http.Request, p params, ca *clientAuth) *oauthError {
	c := ca.c
	if !c.allows(grantCode) {
		return errUnauthorizedClient("The client may not use the authorization code grant.")
	}
	code := p.get("code")
	if code == "" {
		return errInvalidRequest("The code parameter is missing.")
	}
	if len(code) > 256 {
		return errInvalidGrant("The authorization code is invalid.")
	}
	key := hashKey(keyCode, code)
	b, err := s.store.Get(r.Context(), key)
	if errors.Is(err, mcpauth.ErrNotFound) {
		return s.codeReplayed(r, code)
	}
	if err != nil {
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	var rec codeRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return errServer
	}
	if s.now().UnixNano() >= rec.Expires {
		return errInvalidGrant("The authorization code has expired.")
	}
	if rec.ClientID != c.ID {
		return errInvalidGrant("The authorization code was issued to another client.")
	}
	if ru := p.get("redirect_uri"); (rec.RedirectGiven || ru != "") && ru != rec.RedirectURI {
		return errInvalidGrant("The redirect_uri does not match the authorization request.")
	}
	verifier := p.get("code_verifier")
	if verifier == "" {
		return errInvalidRequest("The code_verifier parameter is missing.")
	}
	if rec.Challenge == "" || !validVerifier(verifier) {
		return errInvalidGrant("The code_verifier does not match the code challenge.")
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(rec.Challenge)) != 1 {
		return errInvalidGrant("The code_verifier does not match the code challenge.")
	}
	if rp := p.get("resource"); rp != "" {
		res, e := s.resolveResource(rp)
		if e != nil {
			return e
		}
		if res.raw != rec.Resource {
			return errInvalidTarget("The resource does not match the authorization request.")
		}
	}

	taken, err := s.store.Take(r.Context(), key)
	if err != nil {
		if errors.Is(err, mcpauth.ErrNotFound) {
			return errInvalidGrant("The authorization code is invalid.") // another request took it
		}
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	// A store fault from here on puts the code back, so that the client's
	// retry works instead of sending the user through the login again.
	if e := s.redeem(w, r, c, code, &rec); e != nil {
		if failedOnStore(e) {
			s.restoreTaken(r, key, taken, rec.Expires)
		}
		return e
	}
	return nil
}

// redeem issues the tokens of a code that was taken.
func (s *Server) redeem(w http.ResponseWriter, r *http.Request, c *client, code string, rec *codeRecord) *oauthError {
	at, e := s.mint(r, boundClaims(r, c, mcpauth.TokenClaims{Subject: rec.Subject, ClientID: c.ID, Audience: []string{rec.Resource}, Scopes: rec.Scopes, Roles: rec.Roles}))
	if e != nil {
		return e
	}
	use := codeUse{ClientID: c.ID, JTI: at.jti, JTIExp: at.exp.Unix()}
	var refresh string
	useTTL := s.accessTTL + time.Minute
	if rec.Refresh {
		g := &grantRecord{ClientID: c.ID, Subject: rec.Subject, Roles: rec.Roles, Scopes: rec.Scopes, Resource: rec.Resource}
		if refresh, use.Family, e = s.newFamily(r, g, at); e != nil {
			return e
		}
		useTTL = s.refreshTTL
	}
	ub, _ := json.Marshal(use)
	if err := s.store.Set(r.Context(), hashKey(keyCodeUsed, code), ub, useTTL); err != nil {
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	s.touchClient(r, c)
	s.record(r, mcpauth.Event{Kind: EventTokenIssued, Outcome: mcpauth.OutcomeSuccess, ClientID: c.ID, Subject: rec.Subject, KeyID: at.jti, Detail: grantCode})
	s.writeToken(w, at, rec.Scopes, refresh)
	return nil
}

// validVerifier reports whether v is a code verifier (RFC 7636 §4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// codeReplayed answers a code that is not (or no longer) valid. If it was
// redeemed before, the tokens it issued are revoked (RFC 6749 §4.1.2).
func (s *Server) codeReplayed(r *http.Request, code string) *oauthError {
	b, err := s.store.Get(r.Context(), hashKey(keyCodeUsed, code))
	if err != nil {
		if !errors.Is(err, mcpauth.ErrNotFound) {
			s.keyFault(r, "store unavailable")
			return errUnavailable
		}
		return errInvalidGrant("The authorization code is invalid.")
	}
	var use codeUse
	if err := json.Unmarshal(b, &use); err != nil {
		return errServer
	}
	s.record(r, mcpauth.Event{Kind: EventReuseDetected, Outcome: mcpauth.OutcomeFailure, Reason: "code_reuse", ClientID: use.ClientID, KeyID: use.JTI})
	if err := s.revokeAccessToken(r.Context(), use.JTI, time.Unix(use.JTIExp, 0)); err != nil {
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	if use.Family != "" {
		if err := s.revokeFamily(r, use.Family, "code_reuse"); err != nil {
			s.keyFault(r, "store unavailable")
			return errUnavailable
		}
	}
	return errInvalidGrant("The authorization code is invalid.")
}
