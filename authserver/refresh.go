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
	keyRefresh       = "as.refresh"         // "as.refresh:<sha256>": a live refresh token
	keyRefreshUsed   = "as.refresh-used"    // "as.refresh-used:<sha256>": a rotated one, kept to detect reuse
	keyFamily        = "as.family"          // "as.family:<id>": the grant and the access tokens issued from it
	keyFamilyRevoked = "as.family-revoked"  // "as.family-revoked:<id>": set once, never unset
)

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
	f.Current = sha256Hex(token)
	if err := s.saveFamily(r.Context(), f); err != nil {
		s.keyFault(r, "store unavailable")
		return "", errUnavailable
	}
	return token, nil
}

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
