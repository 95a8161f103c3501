package mcpauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unsafe"

	"github.com/mcpauth/mcpauth/internal/jose"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// The introspection error classes.
var (
	// errTokenInactive refuses a token that the authorization server's
	// introspection endpoint says is not active (RFC 7662 §2.2): unknown,
	// expired, or revoked. It refines ErrInvalidCredentials, so Require
	// answers it with 401 invalid_token.
	errTokenInactive        error = &errorClass{msg: "mcpauth: token not active", reason: "token_inactive", desc: "The access token is not active.", parent: ErrInvalidCredentials}
	errIntrospectionFailed  error = &errorClass{msg: "mcpauth: token introspection unavailable", reason: "introspection_unavailable", desc: "Authentication is temporarily unavailable.", parent: ErrUnavailable}
	errIntrospectionRefused error = &errorClass{msg: "mcpauth: token introspection refused this server's credentials", reason: "introspection_unavailable", desc: "Authentication is temporarily unavailable.", parent: ErrUnavailable}
)

// maxIntrospectionResponse bounds an introspection response. Real ones are
// a few hundred bytes.
const maxIntrospectionResponse = 64 << 10

// introspector checks opaque tokens at the authorization server's
// introspection endpoint (RFC 7662).
type introspector struct {
	v        *OAuthVerifier
	endpoint string
	// auth is the Authorization header of every introspection request: the
	// server's client credentials (client_secret_basic, RFC 6749 §2.3.1,
	// which form-encodes both before base64). It is a secret.
	auth    string
	active  *hashCache[*introspected] // positive answers
	refused *hashCache[*introspected] // negative ones, apart so that a flood of made-up tokens cannot evict the good
	// calls holds the introspections under way, so that concurrent
	// requests with one token make one.
	calls flights[*Principal]
}

func newIntrospector(v *OAuthVerifier, endpoint string) *introspector {
	creds := url.QueryEscape(v.opts.ClientID) + ":" + url.QueryEscape(v.opts.ClientSecret)
	i := &introspector{
		v:        v,
		endpoint: endpoint,
		auth:     "Basic " + base64.StdEncoding.EncodeToString([]byte(creds)),
	}
	if v.opts.CacheTTL > 0 {
		i.active = newHashCache[*introspected](v.opts.CacheSize)
		i.refused = newHashCache[*introspected](v.opts.CacheSize)
	}
	return i
}

// check returns the principal of an opaque token, from the cache or by
// introspection.
func (i *introspector) check(ctx context.Context, token string) (*Principal, error) {
	// The token is only read; hashing it in place spares a copy.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	now := i.v.now()
	if i.active != nil {
		if e, ok := i.active.get(&sum, now.UnixNano()); ok {
			return e.p, nil
		}
		if e, ok := i.refused.get(&sum, now.UnixNano()); ok {
			return nil, e.err
		}
	}
	p, err := i.calls.do(&sum, 0, ctx.Done(), func() (*Principal, error) {
		// The request's cancellation would fail the requests waiting on
		// this one too; the HTTP client's timeout bounds the call.
		p, err, until := i.introspectToken(context.WithoutCancel(ctx), token, &sum, now)
		if i.active != nil && !until.IsZero() {
			if err == nil {
				i.active.put(&sum, &introspected{p: p}, until.UnixNano(), now.UnixNano())
			} else {
				i.refused.put(&sum, &introspected{err: err}, until.UnixNano(), now.UnixNano())
			}
		}
		return p, err
	})
	if errors.Is(err, errFlightAbandoned) {
		return nil, failure(MethodOAuth, errIntrospectionFailed, keyID(&sum), "request ended while waiting for introspection")
	}
	return p, err
}

// introspectToken asks the authorization server about token and judges
// the answer. until is how long the answer may be cached, zero for not at
// all.
func (i *introspector) introspectToken(ctx context.Context, token string, sum *[32]byte, now time.Time) (p *Principal, err error, until time.Time) {
	kid := keyID(sum)
	unavailable := func(class error, detail string) (*Principal, error, time.Time) {
		i.v.reportKeySource(detail)
		return nil, failure(MethodOAuth, class, kid, detail), time.Time{}
	}
	form := "token=" + url.QueryEscape(token) + "&token_type_hint=access_token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, i.endpoint, strings.NewReader(form))
	if err != nil {
		return unavailable(errIntrospectionFailed, "bad introspection endpoint")
	}
	req.Header["Content-Type"] = []string{"application/x-www-form-urlencoded"}
	req.Header["Accept"] = []string{"application/json"}
	req.Header["Authorization"] = []string{i.auth}
	resp, err := i.v.client.Do(req)
	if err != nil {
		// The error names the endpoint, never the body; it is not logged
		// all the same.
		return unavailable(errIntrospectionFailed, "introspection endpoint unreachable")
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return unavailable(errIntrospectionRefused, "introspection endpoint refused this server's client credentials")
	case resp.StatusCode != http.StatusOK:
		return unavailable(errIntrospectionFailed, "introspection endpoint answered "+resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionResponse+1))
	if err != nil || len(body) > maxIntrospectionResponse {
		return unavailable(errIntrospectionFailed, "introspection response unreadable or too large")
	}
	m, err := jose.DecodeObject(body, maxJSONDepth)
	if err != nil {
		return unavailable(errIntrospectionFailed, "introspection response is not a JSON object")
	}
	active, ok := m["active"].(bool)
	if !ok {
		return unavailable(errIntrospectionFailed, "introspection response without active")
	}

	cacheUntil := now.Add(i.v.opts.CacheTTL)
	refuse := func(class error, detail string) (*Principal, error, time.Time) {
		return nil, failure(MethodOAuth, class, kid, detail), cacheUntil
	}
	if !active {
		return refuse(errTokenInactive, "")
	}
	if jti, ok := m["jti"].(string); ok && jti != "" {
		kid = auditKeyID(jti)
	}
	// RFC 7662 §2.2 makes iss and aud optional; the audience is what binds
	// the token to this server (RFC 8707), so it is required.
	if iss, present := m["iss"]; present && iss != i.v.issuer {
		return refuse(errTokenIssuer, "introspection iss mismatch")
	}
	aud, ok := jose.Audience(m["aud"])
	switch {
	case !ok:
		return refuse(errTokenMalformed, "bad aud")
	case len(aud) == 0:
		return refuse(errTokenAudience, "no aud")
	case !oauthex.MatchesResource(aud, i.v.opts.Resource.resource):
		return refuse(errTokenAudience, "aud mismatch")
	}
	leeway := i.v.opts.Leeway
	var exp time.Time
	if t, present, ok := jose.NumericDate(m, "exp"); !ok {
		return refuse(errTokenMalformed, "bad exp")
	} else if present {
		exp = t
		if !now.Before(t.Add(leeway)) {
			return refuse(errTokenExpired, "")
		}
		if e := t.Add(leeway); e.Before(cacheUntil) {
			cacheUntil = e
		}
	}
	if t, present, ok := jose.NumericDate(m, "nbf"); !ok {
		return refuse(errTokenMalformed, "bad nbf")
	} else if present && now.Add(leeway).Before(t) {
		// It becomes valid by itself: not cached.
		return nil, failure(MethodOAuth, errTokenNotYetValid, kid, "nbf in the future"), time.Time{}
	}
	// A refresh token is active too, and some servers introspect it despite
	// the hint: token_type (RFC 7662) and token_use (Ory Hydra) tell.
	if tt, present := m["token_type"]; present {
		s, _ := tt.(string)
		if !strings.EqualFold(s, "bearer") && !strings.EqualFold(s, "access_token") {
			return refuse(errTokenType, "token_type not bearer")
		}
	}
	if tu, present := m["token_use"]; present && tu != "access_token" {
		return refuse(errTokenType, "token_use not access_token")
	}
	if _, bound := m["cnf"]; bound {
		// See TrustedIssuer.AcceptBoundTokens: a bearer request proves no
		// key.
		return refuse(errTokenBound, "cnf member")
	}
	sub, _ := m["sub"].(string)
	if sub == "" {
		return refuse(errTokenMalformed, "no sub")
	}
	clientID, _ := m["client_id"].(string)
	roleClaims, scopeClaims := i.v.opts.RoleClaims, i.v.opts.ScopeClaims
	if roleClaims == nil {
		roleClaims = []string{"role", "roles"}
	}
	if scopeClaims == nil {
		scopeClaims = []string{"scope", "scp", "permissions"}
	}
	p = &Principal{
		Subject:  sub,
		Method:   MethodOAuth,
		Issuer:   i.v.issuer,
		ClientID: clientID,
		Roles:    collectClaims(m, roleClaims, false),
		Scopes:   collectClaims(m, scopeClaims, true),
		Expiry:   exp,
		Claims:   m,
		KeyID:    kid,
		state:    &introspectionState{i: i, token: token},
		clock:    i.v.opts.Clock,
	}
	return p.seal(), nil, cacheUntil
}

// introspectionState asks the authorization server again, for an open
// request, whether an opaque token is still active: it is the only one who
// knows. Answers come through the introspector's cache, so a revocation
// ends a stream within the cache's TTL and the check interval.
type introspectionState struct {
	i     *introspector
	token string
}

func (s *introspectionState) isRevoked(ctx context.Context) (bool, error) {
	_, err := s.i.check(ctx, s.token)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ErrUnavailable):
		return false, err
	}
	return true, nil
}

func (s *introspectionState) shared() bool { return true }

// introspected is an introspection answer, cached by the token's SHA-256
// (never the token) in a hashCache.
type introspected struct {
	p   *Principal // sealed; nil for a refusal
	err error
}
