package authserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/audittap"
)

// A Client is a pre-registered OAuth client.
type Client struct {
	// ID is the client_id. Required; at most 256 printable ASCII
	// characters, and not an https URL (those name client ID metadata
	// documents).
	ID string
	// Name is what the consent screen calls the client. Empty means ID.
	Name string

	// Secret makes the client confidential: it authenticates with
	// client_secret_basic or client_secret_post. At least 32 characters
	// of high entropy (see [NewClientSecret]); only its SHA-256 is kept.
	// Empty, with SecretSHA256 empty too, makes a public client, which
	// authenticates with its client_id alone (token_endpoint_auth_method
	// none) and so may use only the authorization code grant, with PKCE.
	Secret string
	// SecretSHA256 is the hex SHA-256 of the secret, for a configuration
	// that should not hold the secret itself. At most one of Secret and
	// SecretSHA256.
	SecretSHA256 string

	// TLSClientAuth makes the client confidential, authenticating with a
	// client certificate issued by a CA the TLS layer trusts
	// (tls_client_auth, RFC 8705 §2.1); CertificateThumbprints, with one of
	// the certificates whose SHA-256 thumbprints ([mcpauth.Thumbprint])
	// they are, whoever issued it (self_signed_tls_client_auth, §2.2). The
	// client sends its client_id and no secret. Its access tokens are bound
	// to the certificate (cnf.x5t#S256, §3), so that a resource server
	// accepts them only over a connection that presents it. At most one of
	// Secret, SecretSHA256, TLSClientAuth and CertificateThumbprints.
	TLSClientAuth          *TLSClientAuth
	CertificateThumbprints []string

	// RedirectURIs are matched exactly against an authorization request's
	// redirect_uri, except that a loopback http URI matches on any port
	// (RFC 8252 §7.3). Each must be https, http on 127.0.0.1, [::1] or
	// localhost, or a private-use scheme of Options.RedirectSchemes.
	RedirectURIs []string

	// GrantTypes are the grants the client may use: "authorization_code",
	// "refresh_token", "client_credentials". Nil (the default) means
	// authorization_code and refresh_token for a client with redirect
	// URIs, client_credentials for a confidential client without any: a
	// client that acts for users does not get tokens for itself unless it
	// says so.
	GrantTypes []string

	// Scopes are the scopes the client may be granted. Nil (the default)
	// means all of Options.Scopes.
	Scopes []string
	// DefaultScopes are granted when a request names none. Nil (the
	// default) means Options.DefaultScopes that Scopes allows.
	DefaultScopes []string

	// Roles are the roles of the tokens the client gets for itself (client
	// credentials), whose subject is the client ID. Tokens issued for a
	// user carry the user's roles instead.
	Roles []string

	// Introspect lets the client introspect the tokens of every client.
	// False (the default) lets it introspect only its own.
	Introspect bool
}

// NewClientSecret returns a new random client secret (256 bits) and its
// hex SHA-256, for Client.Secret or Client.SecretSHA256.
func NewClientSecret() (secret, sha256Hex string, err error) {
	secret, err = randomToken("mcpcs_")
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256([]byte(secret))
	return secret, hex.EncodeToString(sum[:]), nil
}

// randomToken returns prefix and 256 random bits in base64url.
func randomToken(prefix string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("mcpauth: authserver: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// hashKey is the store key of a secret value: kind and the hex SHA-256 of
// the value, so that a copy of the store yields nothing usable.
func hashKey(kind, value string) string {
	sum := sha256.Sum256([]byte(value))
	return kind + ":" + hex.EncodeToString(sum[:])
}

// Where a client comes from.
const (
	sourcePreregistered = "preregistered"
	sourceDynamic       = "dynamic"
	sourceMetadata      = "metadata"
)

// The grant types.
const (
	grantCode              = "authorization_code"
	grantRefresh           = "refresh_token"
	grantClientCredentials = "client_credentials"
)

// Token endpoint authentication methods.
const (
	authNone   = "none"
	authBasic  = "client_secret_basic"
	authPost   = "client_secret_post"
	keyClients = "as.client"
)

// client is a client of any source, as the server uses it and as a
// registered client is stored (under "as.client:<id>").
type client struct {
	ID              string   `json:"client_id"`
	Name            string   `json:"client_name,omitempty"`
	SecretSHA256    string   `json:"secret_sha256,omitempty"`
	AuthMethod      string   `json:"token_endpoint_auth_method"`
	ApplicationType string   `json:"application_type,omitempty"`
	RedirectURIs    []string `json:"redirect_uris,omitempty"`
	GrantTypes      []string `json:"grant_types"`
	Scopes          []string `json:"scopes"` // nil: all of the server's
	DefaultScopes   []string `json:"default_scopes"`
	Roles           []string `json:"roles,omitempty"`
	Introspect      bool     `json:"introspect,omitempty"`
	// The certificate of a client that authenticates with one (RFC 8705
	// §2.1.2 names the registration parameters).
	TLSSubjectDN    string   `json:"tls_client_auth_subject_dn,omitempty"`
	TLSDNS          string   `json:"tls_client_auth_san_dns,omitempty"`
	TLSURI          string   `json:"tls_client_auth_san_uri,omitempty"`
	TLSEmail        string   `json:"tls_client_auth_san_email,omitempty"`
	CertThumbprints []string `json:"x5t_s256,omitempty"`
	ClientURI       string   `json:"client_uri,omitempty"`
	LogoURI         string   `json:"logo_uri,omitempty"`
	Source          string   `json:"source"`
	// IssuedAt and Touched are Unix seconds: when a registered client was
	// registered, and when its expiry was last pushed back.
	IssuedAt int64 `json:"issued_at,omitempty"`
	Touched  int64 `json:"touched,omitempty"`
}

func (c *client) confidential() bool { return c.SecretSHA256 != "" || c.usesTLS() }

func (c *client) allows(grant string) bool { return slices.Contains(c.GrantTypes, grant) }

func (c *client) displayName() string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

// allowedScopes returns the scopes c may be granted.
func (s *Server) allowedScopes(c *client) []string {
	if c.Scopes == nil {
		return s.scopes
	}
	return c.Scopes
}

// defaultScopesOf returns the scopes granted to c when a request names none.
func (s *Server) defaultScopesOf(c *client) []string {
	if c.DefaultScopes != nil {
		return c.DefaultScopes
	}
	return intersect(s.defaultScopes, s.allowedScopes(c))
}

// printableASCII reports whether v is non-empty printable ASCII of at most
// max bytes.
func printableASCII(v string, max int) bool {
	if v == "" || len(v) > max {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func (s *Server) preregistered(in *Client) (*client, error) {
	bad := func(format string, args ...any) (*client, error) {
		return nil, fmt.Errorf("mcpauth: authserver: client %q: "+format, append([]any{in.ID}, args...)...)
	}
	if !printableASCII(in.ID, 256) {
		return bad("the ID must be 1 to 256 printable ASCII characters")
	}
	if strings.HasPrefix(strings.ToLower(in.ID), "https://") {
		return bad("an https URL names a client ID metadata document, not a pre-registered client")
	}
	c := &client{
		ID:            in.ID,
		Name:          in.Name,
		AuthMethod:    authNone,
		RedirectURIs:  slices.Clone(in.RedirectURIs),
		Roles:         slices.Clone(in.Roles),
		Introspect:    in.Introspect,
		Source:        sourcePreregistered,
		Scopes:        nil,
		DefaultScopes: nil,
	}
	switch {
	case in.Secret != "" && in.SecretSHA256 != "":
		return bad("set Secret or SecretSHA256, not both")
	case in.Secret != "":
		if len(in.Secret) < 32 {
			return bad("the secret is shorter than 32 characters")
		}
		sum := sha256.Sum256([]byte(in.Secret))
		c.SecretSHA256 = hex.EncodeToString(sum[:])
	case in.SecretSHA256 != "":
		b, err := hex.DecodeString(in.SecretSHA256)
		if err != nil || len(b) != sha256.Size {
			return bad("SecretSHA256 is not a hex SHA-256")
		}
		c.SecretSHA256 = hex.EncodeToString(b)
	}
	if c.confidential() {
		c.AuthMethod = authBasic
	}
	if in.TLSClientAuth != nil || len(in.CertificateThumbprints) > 0 {
		if c.confidential() {
			return bad("set a secret or a certificate, not both")
		}
		if err := c.setTLSAuth(in); err != nil {
			return bad("%v", err)
		}
	}
	for _, u := range c.RedirectURIs {
		if _, err := s.classifyRedirect(u); err != nil {
			return bad("redirect URI %q is not allowed: use https, http on a loopback host, or a private-use scheme of RedirectSchemes", u)
		}
	}
	if in.GrantTypes == nil {
		if len(c.RedirectURIs) > 0 {
			c.GrantTypes = append(c.GrantTypes, grantCode, grantRefresh)
		}
		if c.confidential() && len(c.RedirectURIs) == 0 {
			c.GrantTypes = append(c.GrantTypes, grantClientCredentials)
		}
	} else {
		for _, g := range in.GrantTypes {
			switch g {
			case grantCode, grantRefresh, grantClientCredentials:
			default:
				return bad("unknown grant type %q", g)
			}
			if !slices.Contains(c.GrantTypes, g) {
				c.GrantTypes = append(c.GrantTypes, g)
			}
		}
	}
	if c.allows(grantCode) && len(c.RedirectURIs) == 0 {
		return bad("the authorization code grant needs redirect URIs")
	}
	if c.allows(grantClientCredentials) && !c.confidential() {
		return bad("the client credentials grant needs a secret")
	}
	if in.Scopes != nil {
		for _, sc := range in.Scopes {
			if !s.scopeSet[sc] {
				return bad("scope %q is not one of Options.Scopes", sc)
			}
		}
		c.Scopes = s.orderScopes(in.Scopes)
	}
	if in.DefaultScopes != nil {
		for _, sc := range in.DefaultScopes {
			if !contains(s.allowedScopes(c), sc) {
				return bad("default scope %q is not one the client may have", sc)
			}
		}
		c.DefaultScopes = s.orderScopes(in.DefaultScopes)
	}
	for _, r := range c.Roles {
		if r == "" {
			return bad("empty role")
		}
	}
	return c, nil
}

var errUnknownClient = errors.New("mcpauth: authserver: unknown client")

// lookupClient finds a client by ID: pre-registered, a client ID metadata
// document, or registered. It returns errUnknownClient, or another error
// when the store or the document could not be read.
func (s *Server) lookupClient(ctx context.Context, id string) (*client, error) {
	if c := s.clients[id]; c != nil {
		return c, nil
	}
	if !printableASCII(id, maxURILen) {
		return nil, errUnknownClient
	}
	if strings.HasPrefix(id, "https://") {
		if s.cimd == nil {
			return nil, errUnknownClient
		}
		return s.cimd.client(ctx, id)
	}
	if !strings.HasPrefix(id, dynamicClientPrefix) || len(id) > 64 {
		return nil, errUnknownClient
	}
	b, err := s.store.Get(ctx, keyClients+":"+id)
	if errors.Is(err, mcpauth.ErrNotFound) {
		return nil, errUnknownClient
	}
	if err != nil {
		return nil, err
	}
	c := new(client)
	if err := json.Unmarshal(b, c); err != nil || c.ID != id {
		return nil, errors.New("mcpauth: authserver: bad client record")
	}
	return c, nil
}

// dynamicClientPrefix starts the ID of every registered client.
const dynamicClientPrefix = "mcpc_"

// clientAuth is how a request authenticated its client.
type clientAuth struct {
	c      *client
	method string // authNone, authBasic, authPost, authTLS or authSelfSigned
}

// authenticateClient authenticates the client of a token, revocation or
// introspection request (RFC 6749 §2.3): HTTP Basic or client_secret in
// the body for a confidential client, client_id alone for a public one.
// Using two methods at once is invalid_request; every failure to
// authenticate is 401 invalid_client, and counts towards the lockout of
// the request's address and of the client id there; a locked-out one is
// 429 before its secret is checked.
func (s *Server) authenticateClient(r *http.Request, p params) (*clientAuth, *oauthError) {
	if err := s.lockout.Check(r, ""); err != nil {
		return nil, errLockedOut(err)
	}
	ca, id, e := s.checkClient(r, p)
	if e != nil {
		if e.code == "invalid_client" {
			s.lockout.Fail(r, clientCredential(id))
		}
		return nil, e
	}
	if err := s.lockout.Check(r, clientCredential(ca.c.ID)); err != nil {
		return nil, errLockedOut(err)
	}
	return ca, nil
}

// clientCredential is what the lockout counts for a client: its id.
func clientCredential(id string) string {
	if id == "" {
		return ""
	}
	return "client:" + id
}

// checkClient is authenticateClient without the lockout; it also returns
// the client id the request presented, if any.
func (s *Server) checkClient(r *http.Request, p params) (*clientAuth, string, *oauthError) {
	var id, secret, method string
	basic := false
	switch auth := r.Header["Authorization"]; len(auth) {
	case 0:
	case 1:
		v := auth[0]
		if len(v) < 6 || !strings.EqualFold(v[:6], "basic ") {
			return nil, id, errInvalidRequest("The Authorization header must use the Basic scheme.")
		}
		basic = true
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[6:]))
		if err != nil {
			return nil, id, errInvalidClient(true)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, id, errInvalidClient(true)
		}
		// RFC 6749 §2.3.1: both are form-encoded before they are joined.
		if id, err = url.QueryUnescape(user); err != nil {
			return nil, id, errInvalidClient(true)
		}
		if secret, err = url.QueryUnescape(pass); err != nil {
			return nil, id, errInvalidClient(true)
		}
		method = authBasic
		audittap.Secret(secret)
		if p.has("client_secret") {
			return nil, id, errInvalidRequest("The request uses more than one client authentication method.")
		}
		if bodyID := p.get("client_id"); bodyID != "" && bodyID != id {
			return nil, id, errInvalidRequest("The client_id does not match the Authorization header.")
		}
	default:
		return nil, id, errInvalidRequest("The request has more than one Authorization header.")
	}
	if !basic {
		id, secret = p.get("client_id"), p.get("client_secret")
		method = authNone
		if secret != "" {
			method = authPost
		}
	}
	if id == "" {
		return nil, id, errInvalidClient(basic)
	}
	c, err := s.lookupClient(r.Context(), id)
	if errors.Is(err, errUnknownClient) {
		return nil, id, errInvalidClient(basic)
	}
	if err != nil {
		s.keyFault(r, "client lookup failed")
		return nil, id, errUnavailable
	}
	if c.usesTLS() {
		// The certificate is the credential: a secret beside it is a
		// second method (an empty Basic password is none).
		if secret != "" {
			return nil, id, errInvalidClient(basic)
		}
		if _, ok := s.clientCertificate(r, c); !ok {
			return nil, id, errInvalidClient(basic)
		}
		return &clientAuth{c: c, method: c.AuthMethod}, id, nil
	}
	if !c.confidential() {
		// A public client has no secret to present; an empty Basic
		// password (what x/oauth2 sends for one) is the same as none.
		if secret != "" {
			return nil, id, errInvalidClient(basic)
		}
		return &clientAuth{c: c, method: authNone}, id, nil
	}
	if secret == "" {
		return nil, id, errInvalidClient(basic)
	}
	want, err := hex.DecodeString(c.SecretSHA256)
	sum := sha256.Sum256([]byte(secret))
	if err != nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return nil, id, errInvalidClient(basic)
	}
	return &clientAuth{c: c, method: method}, id, nil
}
