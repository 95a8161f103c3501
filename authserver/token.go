package authserver

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/mcpauth/mcpauth"
)

// tokenResponse is the successful response of RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// handleToken is the token endpoint (RFC 6749 §3.2).
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	var ca *clientAuth
	p, e := readParams(r)
	grant := p.get("grant_type")
	switch {
	case e != nil:
	case grant == "":
		e = errInvalidRequest("The grant_type parameter is missing.")
	default:
		ca, e = s.authenticateClient(r, p)
	}
	if e == nil {
		switch grant {
		case grantClientCredentials:
			e = s.clientCredentials(w, r, p, ca)
		case grantCode:
			e = s.authorizationCode(w, r, p, ca)
		case grantRefresh:
			e = s.refresh(w, r, p, ca)
		default:
			e = errUnsupportedGrant
		}
	}
	if e != nil {
		ev := mcpauth.Event{Kind: EventTokenIssued, Outcome: mcpauth.OutcomeFailure, Reason: e.code, Detail: grantDetail(grant)}
		if ca != nil {
			ev.ClientID = ca.c.ID
		}
		s.record(r, ev)
		s.writeError(w, e)
	}
}

// grantDetail names a grant type in an event, bounded to the known ones.
func grantDetail(g string) string {
	switch g {
	case grantCode, grantRefresh, grantClientCredentials:
		return g
	case "":
		return ""
	}
	return "other"
}

// clientCredentials is the client credentials grant (RFC 6749 §4.4): a
// confidential client gets a token for itself, with its own roles; no
// refresh token (§4.4.3).
func (s *Server) clientCredentials(w http.ResponseWriter, r *http.Request, p params, ca *clientAuth) *oauthError {
	c := ca.c
	if !c.confidential() || !c.allows(grantClientCredentials) {
		return errUnauthorizedClient("The client may not use the client credentials grant.")
	}
	scopes, _, e := s.grant(p.get("scope"), s.allowedScopes(c), s.defaultScopesOf(c))
	if e != nil {
		return e
	}
	res, e := s.resolveResource(p.get("resource"))
	if e != nil {
		return e
	}
	at, e := s.mint(r, boundClaims(r, c, mcpauth.TokenClaims{Subject: c.ID, ClientID: c.ID, Audience: []string{res.raw}, Scopes: scopes, Roles: c.Roles}))
	if e != nil {
		return e
	}
	s.record(r, mcpauth.Event{Kind: EventTokenIssued, Outcome: mcpauth.OutcomeSuccess, ClientID: c.ID, Subject: c.ID, KeyID: at.jti, Detail: grantClientCredentials})
	s.writeToken(w, at, scopes, "")
	return nil
}

// accessToken is a minted access token with the claims revocation needs.
type accessToken struct {
	token string
	jti   string
	exp   time.Time
}

// mint signs an access token with the current key.
func (s *Server) mint(r *http.Request, c mcpauth.TokenClaims) (*accessToken, *oauthError) {
	ring, err := s.keys.current(r.Context())
	if err != nil {
		s.keyFault(r, "signing keys unavailable")
		return nil, errUnavailable
	}
	c.TTL = s.accessTTL
	tok, err := ring.signer.Mint(c)
	if err != nil {
		return nil, errServer
	}
	at := &accessToken{token: tok}
	// The jti is Mint's own choice: read it back from the payload.
	if i, j := strings.IndexByte(tok, '.'), strings.LastIndexByte(tok, '.'); i > 0 && j > i {
		if payload, err := base64.RawURLEncoding.DecodeString(tok[i+1 : j]); err == nil {
			var claims struct {
				JTI string `json:"jti"`
				Exp int64  `json:"exp"`
			}
			if json.Unmarshal(payload, &claims) == nil {
				at.jti, at.exp = claims.JTI, time.Unix(claims.Exp, 0)
			}
		}
	}
	if at.jti == "" {
		return nil, errServer
	}
	return at, nil
}

func (s *Server) writeToken(w http.ResponseWriter, at *accessToken, scopes []string, refresh string) {
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken:  at.token,
		TokenType:    "Bearer",
		ExpiresIn:    int64(s.accessTTL / time.Second),
		Scope:        strings.Join(scopes, " "),
		RefreshToken: refresh,
	})
}
