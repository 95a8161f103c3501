package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/header"
)

// ownVerifier checks this server's access tokens for revocation and
// introspection, for any of its resources.
type ownVerifier struct {
	once sync.Once
	v    *Verifier
	err  error
}

func (s *Server) tokenVerifier() (*Verifier, error) {
	s.own.once.Do(func() {
		v := &Verifier{s: s, ownUse: true}
		for _, r := range s.resources {
			v.audiences = append(v.audiences, r.raw)
		}
		if _, s.own.err = v.verifier(context.Background()); s.own.err == nil {
			s.own.v = v
		}
	})
	return s.own.v, s.own.err
}

// handleRevoke is the revocation endpoint (RFC 7009). The client
// authenticates (a public one by its client_id), and may revoke only its
// own tokens. The answer is 200 whatever the token was (§2.2): unknown,
// expired, another client's. Revoking a refresh token revokes its family
// and the access tokens issued from it; revoking an access token records
// its jti, which every Verifier sharing the Store reads.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	p, e := readParams(r)
	var ca *clientAuth
	if e == nil {
		ca, e = s.authenticateClient(r, p)
	}
	if e == nil && p.get("token") == "" {
		e = errInvalidRequest("The token parameter is missing.")
	}
	if e == nil {
		e = s.revoke(r, ca.c, p.get("token"))
	}
	if e != nil {
		ev := mcpauth.Event{Kind: EventTokenRevoked, Outcome: mcpauth.OutcomeFailure, Reason: e.code}
		if ca != nil {
			ev.ClientID = ca.c.ID
		}
		s.record(r, ev)
		s.writeError(w, e)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}

func (s *Server) revoke(r *http.Request, c *client, token string) *oauthError {
	ctx := r.Context()
	if header.LooksLikeJWT(token) {
		p, e := s.accessTokenPrincipal(ctx, r, token)
		if e != nil || p == nil || p.ClientID != c.ID {
			return e
		}
		jti, _ := p.Claims["jti"].(string)
		if err := s.revokeAccessToken(ctx, jti, p.Expiry); err != nil {
			s.keyFault(r, "store unavailable")
			return errUnavailable
		}
		s.record(r, mcpauth.Event{Kind: EventTokenRevoked, Outcome: mcpauth.OutcomeSuccess, ClientID: c.ID, Subject: p.Subject, KeyID: jti, Detail: "access_token"})
		return nil
	}
	if len(token) > 256 {
		return nil
	}
	familyID, clientID, err := s.refreshFamily(ctx, token)
	if err != nil {
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	if familyID == "" || clientID != c.ID {
		return nil
	}
	if err := s.revokeFamily(r, familyID, "revocation"); err != nil {
		s.keyFault(r, "store unavailable")
		return errUnavailable
	}
	return nil
}

// accessTokenPrincipal returns the principal of a valid access token of
// this server, or nil for a token that is not (any more).
func (s *Server) accessTokenPrincipal(ctx context.Context, r *http.Request, token string) (*mcpauth.Principal, *oauthError) {
	v, err := s.tokenVerifier()
	if err != nil {
		s.keyFault(r, "signing keys unavailable")
		return nil, errUnavailable
	}
	p, err := v.Verify(ctx, token)
	if errors.Is(err, mcpauth.ErrUnavailable) {
		s.keyFault(r, "store unavailable")
		return nil, errUnavailable
	}
	if err != nil {
		return nil, nil
	}
	return p, nil
}

// refreshFamily finds the family of a refresh token, live or rotated.
func (s *Server) refreshFamily(ctx context.Context, token string) (familyID, clientID string, err error) {
	h := sha256Hex(token)
	b, err := s.store.Get(ctx, keyRefresh+":"+h)
	if err == nil {
		var rec refreshRecord
		if json.Unmarshal(b, &rec) == nil {
			return rec.Family, rec.ClientID, nil
		}
		return "", "", nil
	}
	if !errors.Is(err, mcpauth.ErrNotFound) {
		return "", "", err
	}
	b, err = s.store.Get(ctx, keyRefreshUsed+":"+h)
	if errors.Is(err, mcpauth.ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	var use refreshUse
	if json.Unmarshal(b, &use) == nil {
		return use.Family, use.ClientID, nil
	}
	return "", "", nil
}

// introspection is the response of RFC 7662 §2.2.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	Audience  string   `json:"aud,omitempty"`
	JTI       string   `json:"jti,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	// Cnf is the confirmation of a certificate-bound token (RFC 8705 §3.2).
	Cnf map[string]any `json:"cnf,omitempty"`
}

// handleIntrospect is the introspection endpoint (RFC 7662), for
// confidential clients only. A client sees its own tokens; one with
// Client.Introspect sees every client's. Anything else, and anything
// unknown, expired or revoked, is active:false.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	p, e := readParams(r)
	var ca *clientAuth
	if e == nil {
		ca, e = s.authenticateClient(r, p)
	}
	if e == nil && !ca.c.confidential() {
		e = errInvalidClient(false)
	}
	if e == nil && p.get("token") == "" {
		e = errInvalidRequest("The token parameter is missing.")
	}
	var res introspection
	if e == nil {
		res, e = s.introspect(r, ca.c, p.get("token"))
	}
	if e != nil {
		ev := mcpauth.Event{Kind: EventIntrospection, Outcome: mcpauth.OutcomeFailure, Reason: e.code}
		if ca != nil {
			ev.ClientID = ca.c.ID
		}
		s.record(r, ev)
		s.writeError(w, e)
		return
	}
	detail := "inactive"
	if res.Active {
		detail = "active"
	}
	s.record(r, mcpauth.Event{Kind: EventIntrospection, Outcome: mcpauth.OutcomeSuccess, ClientID: ca.c.ID, Subject: res.Subject, KeyID: res.JTI, Detail: detail})
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) introspect(r *http.Request, c *client, token string) (introspection, *oauthError) {
	ctx := r.Context()
	if header.LooksLikeJWT(token) {
		p, e := s.accessTokenPrincipal(ctx, r, token)
		if e != nil || p == nil || (p.ClientID != c.ID && !c.Introspect) {
			return introspection{}, e
		}
		res := introspection{Active: true, Scope: strings.Join(p.Scopes, " "), ClientID: p.ClientID, Subject: p.Subject,
			TokenType: "Bearer", Exp: p.Expiry.Unix(), Issuer: p.Issuer, Roles: p.Roles}
		res.JTI, _ = p.Claims["jti"].(string)
		res.Audience, _ = p.Claims["aud"].(string)
		res.Cnf, _ = p.Claims["cnf"].(map[string]any)
		if iat, ok := p.Claims["iat"].(float64); ok {
			res.Iat = int64(iat)
		}
		return res, nil
	}
	if len(token) > 256 {
		return introspection{}, nil
	}
	b, err := s.store.Get(ctx, keyRefresh+":"+sha256Hex(token))
	if errors.Is(err, mcpauth.ErrNotFound) {
		return introspection{}, nil
	}
	if err != nil {
		s.keyFault(r, "store unavailable")
		return introspection{}, errUnavailable
	}
	var rec refreshRecord
	if json.Unmarshal(b, &rec) != nil || s.now().UnixNano() >= rec.Expires || (rec.ClientID != c.ID && !c.Introspect) {
		return introspection{}, nil
	}
	f, err := s.loadFamily(ctx, rec.Family)
	if errors.Is(err, errNoFamily) {
		return introspection{}, nil
	}
	if err != nil {
		s.keyFault(r, "store unavailable")
		return introspection{}, errUnavailable
	}
	return introspection{Active: true, Scope: strings.Join(f.Scopes, " "), ClientID: f.ClientID, Subject: f.Subject,
		TokenType: "refresh_token", Exp: time.Unix(0, rec.Expires).Unix(), Issuer: s.issuer, Audience: f.Resource, Roles: f.Roles}, nil
}
