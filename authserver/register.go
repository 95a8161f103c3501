package authserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/header"
	"github.com/mcpauth/mcpauth/internal/jose"
	"github.com/mcpauth/mcpauth/internal/limiter"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/time/rate"
)

// maxRedirectURIs bounds the redirect URIs of one registration.
const maxRedirectURIs = 10

// Limiter rules.
const ruleRegister = 1

// metadataFields are the client metadata this server reads, from a
// registration or a client ID metadata document. Other members are
// ignored (RFC 7591 §2); names are matched exactly, so "Redirect_URIs"
// is one of the ignored.
var metadataFields = []string{
	"redirect_uris", "token_endpoint_auth_method", "grant_types", "response_types",
	"client_name", "client_uri", "logo_uri", "scope", "contacts", "tos_uri", "policy_uri",
	"software_id", "software_version", "application_type",
}

// parseMetadata reads client metadata (RFC 7591 §2) from a JSON object:
// strictly (no duplicate members, valid UTF-8), then into go-sdk's type.
func parseMetadata(body []byte) (*oauthex.ClientRegistrationMetadata, map[string]any, error) {
	m, err := jose.DecodeObject(body, 8)
	if err != nil {
		return nil, nil, err
	}
	known := map[string]any{}
	for _, k := range metadataFields {
		if v, ok := m[k]; ok {
			known[k] = v
		}
	}
	b, err := json.Marshal(known)
	if err != nil {
		return nil, nil, err
	}
	var md oauthex.ClientRegistrationMetadata
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, nil, err
	}
	return &md, m, nil
}

// clientFromMetadata checks client metadata and makes a client of it:
// the redirect URIs by the rules every redirect URI follows, and for
// application_type "web" https only; grants authorization_code and
// refresh_token only (a self-registered client never gets tokens for
// itself); unknown scopes dropped; a client's https home page and logo
// kept, anything else dropped.
func (s *Server) clientFromMetadata(md *oauthex.ClientRegistrationMetadata, source string) (*client, *oauthError) {
	badMeta := func(desc string) (*client, *oauthError) {
		return nil, &oauthError{code: "invalid_client_metadata", desc: desc}
	}
	badRedirect := func(desc string) (*client, *oauthError) {
		return nil, &oauthError{code: "invalid_redirect_uri", desc: desc}
	}
	if len(md.RedirectURIs) == 0 {
		return badRedirect("redirect_uris is required.")
	}
	if len(md.RedirectURIs) > maxRedirectURIs {
		return badRedirect("Too many redirect_uris.")
	}
	c := &client{Source: source, GrantTypes: []string{grantCode, grantRefresh}}
	web := true
	for _, u := range md.RedirectURIs {
		kind, err := s.classifyRedirect(u)
		if err != nil {
			return badRedirect("A redirect URI must be https, http on 127.0.0.1, [::1] or localhost, or an allowed app scheme, without a fragment.")
		}
		if kind != redirectWeb {
			web = false
		}
		if !slices.Contains(c.RedirectURIs, u) {
			c.RedirectURIs = append(c.RedirectURIs, u)
		}
	}
	switch md.ApplicationType {
	case "":
		// Not every client says (the 2026-07-28 spec makes them): infer it.
		c.ApplicationType = "native"
		if web {
			c.ApplicationType = "web"
		}
	case "web":
		if !web {
			return badRedirect("A web application's redirect URIs must be https.")
		}
		c.ApplicationType = "web"
	case "native":
		c.ApplicationType = "native"
	default:
		return badMeta("application_type must be web or native.")
	}
	if md.GrantTypes != nil {
		c.GrantTypes = nil
		for _, g := range md.GrantTypes {
			if g != grantCode && g != grantRefresh {
				return badMeta("Only the authorization_code and refresh_token grants can be registered.")
			}
			if !slices.Contains(c.GrantTypes, g) {
				c.GrantTypes = append(c.GrantTypes, g)
			}
		}
		if !slices.Contains(c.GrantTypes, grantCode) {
			return badMeta("grant_types must include authorization_code.")
		}
	}
	for _, rt := range md.ResponseTypes {
		if rt != "code" {
			return badMeta("Only the code response type is supported.")
		}
	}
	if md.Scope != "" {
		req, _, ok := parseScope(md.Scope)
		if !ok {
			return badMeta("The scope is malformed.")
		}
		if known := s.orderScopes(req); len(known) > 0 {
			c.Scopes = known
		}
	}
	c.Name = cleanName(md.ClientName)
	c.ClientURI = httpsOnly(md.ClientURI)
	c.LogoURI = httpsOnly(md.LogoURI)
	return c, nil
}

// cleanName bounds a client's name for display: no control characters,
// at most 100 characters.
func cleanName(n string) string {
	if !utf8.ValidString(n) {
		return ""
	}
	var b strings.Builder
	count := 0
	for _, r := range n {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069') {
			continue
		}
		if count++; count > 100 {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// handleRegister is dynamic client registration (RFC 7591): open unless an
// initial access token is configured, rate limited per remote address.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ok, retry := s.limits.Take(limiter.Key{Rule: ruleRegister, ID: host}, rate.Limit(float64(s.registration.RatePerMinute)/60), s.registration.Burst); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(retry/time.Second)+1))
		s.record(r, mcpauth.Event{Kind: EventClientRegistered, Outcome: mcpauth.OutcomeFailure, Reason: "rate_limited"})
		s.writeError(w, &oauthError{code: "temporarily_unavailable", desc: "Too many registrations; try again later.", status: http.StatusTooManyRequests})
		return
	}
	if want := s.registration.InitialAccessToken; want != "" {
		tok, _, ok, _ := header.Bearer(r.Header)
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(want)) != 1 {
			s.record(r, mcpauth.Event{Kind: EventClientRegistered, Outcome: mcpauth.OutcomeFailure, Reason: "invalid_token"})
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			s.writeError(w, &oauthError{code: "invalid_token", desc: "Registration requires an initial access token.", status: http.StatusUnauthorized})
			return
		}
	}
	resp, e := s.register(r)
	if e != nil {
		s.record(r, mcpauth.Event{Kind: EventClientRegistered, Outcome: mcpauth.OutcomeFailure, Reason: e.code})
		s.writeError(w, e)
		return
	}
	s.record(r, mcpauth.Event{Kind: EventClientRegistered, Outcome: mcpauth.OutcomeSuccess, ClientID: resp.ClientID, Detail: resp.TokenEndpointAuthMethod})
	b, err := json.Marshal(resp)
	if err == nil && resp.ClientSecret != "" {
		// RFC 7591 §3.2.1: client_secret_expires_at is required with a
		// secret, 0 for one that does not expire; go-sdk's type leaves a
		// zero out.
		b = append(b[:len(b)-1], []byte(`,"client_secret_expires_at":0}`)...)
	}
	if err != nil {
		s.writeError(w, errServer)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
}

func (s *Server) register(r *http.Request) (*oauthex.ClientRegistrationResponse, *oauthError) {
	bad := &oauthError{code: "invalid_client_metadata", desc: "The body must be a JSON object of client metadata, at most 64 KiB."}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, bad
	}
	body, err := readBody(r)
	if err != nil {
		return nil, bad
	}
	md, _, err := parseMetadata(body)
	if err != nil {
		return nil, bad
	}
	c, e := s.clientFromMetadata(md, sourceDynamic)
	if e != nil {
		return nil, e
	}
	switch md.TokenEndpointAuthMethod {
	case authNone:
		c.AuthMethod = authNone
	case "", authBasic, authPost:
		// RFC 7591 §2: client_secret_basic unless said otherwise.
		c.AuthMethod = md.TokenEndpointAuthMethod
		if c.AuthMethod == "" {
			c.AuthMethod = authBasic
		}
	default:
		return nil, &oauthError{code: "invalid_client_metadata", desc: "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post."}
	}
	id, err := randomToken(dynamicClientPrefix)
	if err != nil {
		return nil, errServer
	}
	c.ID = id[:len(dynamicClientPrefix)+22] // 128 bits are plenty for an identifier
	var secret string
	if c.AuthMethod != authNone {
		if secret, c.SecretSHA256, err = NewClientSecret(); err != nil {
			return nil, errServer
		}
	}
	now := s.now()
	c.IssuedAt, c.Touched = now.Unix(), now.Unix()
	b, err := json.Marshal(c)
	if err == nil {
		err = s.store.Create(r.Context(), keyClients+":"+c.ID, b, s.registration.ClientTTL)
	}
	if err != nil {
		if errors.Is(err, mcpauth.ErrExists) {
			return nil, errServer
		}
		s.keyFault(r, "store unavailable")
		return nil, errUnavailable
	}
	out := &oauthex.ClientRegistrationResponse{
		ClientRegistrationMetadata: oauthex.ClientRegistrationMetadata{
			RedirectURIs:            c.RedirectURIs,
			TokenEndpointAuthMethod: c.AuthMethod,
			GrantTypes:              c.GrantTypes,
			ResponseTypes:           []string{"code"},
			ClientName:              c.Name,
			ClientURI:               c.ClientURI,
			LogoURI:                 c.LogoURI,
			Scope:                   strings.Join(c.Scopes, " "),
			ApplicationType:         c.ApplicationType,
			SoftwareID:              boundASCII(md.SoftwareID, 256),
			SoftwareVersion:         boundASCII(md.SoftwareVersion, 64),
		},
		ClientID:         c.ID,
		ClientSecret:     secret,
		ClientIDIssuedAt: time.Unix(c.IssuedAt, 0),
	}
	return out, nil
}

func boundASCII(v string, max int) string {
	if printableASCII(strings.ReplaceAll(v, " ", "_"), max) {
		return v
	}
	return ""
}
