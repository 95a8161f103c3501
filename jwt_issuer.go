package mcpauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// JWTIssuerOptions configures [NewJWTIssuer].
type JWTIssuerOptions struct {
	// Issuer is the iss claim of every token, usually the issuer's URL.
	// Required.
	Issuer string

	// Key signs the tokens, and decides the algorithm: a []byte HMAC secret
	// of at least 32 bytes (HS256), an *ecdsa.PrivateKey on P-256 (ES256) or
	// an ed25519.PrivateKey (EdDSA). Prefer an asymmetric key: a verifier
	// then needs only the public key (see [JWTIssuer.JWKS]), and cannot mint.
	Key any

	// KeyID is the kid header of every token. Empty (the default) means the
	// RFC 7638 thumbprint of an asymmetric key, and no kid for an HMAC key.
	KeyID string

	// Audience is the aud of a token whose [TokenClaims] name none, usually
	// the URL of the MCP server the tokens are for. Nil (the default) means
	// tokens must name their own.
	Audience []string

	// TTL is how long a token is valid unless its [TokenClaims] say
	// otherwise. Zero (the default) means one hour.
	TTL time.Duration

	// Clock returns the current time. Nil (the default) means time.Now.
	Clock func() time.Time
}

// TokenClaims are what a minted token says about its subject.
type TokenClaims struct {
	// Subject is the sub claim. Required.
	Subject string
	// Audience is the aud claim. Nil means the issuer's Audience.
	Audience []string
	// ClientID is the client_id claim (RFC 9068 §2.2), if any.
	ClientID string
	// Scopes become the space-delimited scope claim, Roles the roles claim.
	Scopes []string
	Roles  []string
	// TTL is how long the token is valid. Zero means the issuer's TTL.
	TTL time.Duration
	// Extra are further claims. They may not replace a claim the issuer
	// sets, nor set one that a JWTVerifier reads as scopes, roles or client
	// by default (scp, permissions, role, azp): those come from the fields
	// above only.
	Extra map[string]any
}

// A JWTIssuer mints signed access tokens (RFC 9068 "at+jwt") with the kid,
// iss, aud, sub, exp, iat, jti, scope and roles a [JWTVerifier] reads. It is
// safe for concurrent use.
type JWTIssuer struct {
	issuer   string
	key      any
	method   jwt.SigningMethod
	kid      string
	audience []string
	ttl      time.Duration
	now      func() time.Time
	header   string // the encoded JOSE header, the same for every token
}

// NewJWTIssuer returns an issuer. It returns an error for a missing issuer, a
// key of an unsupported type, or an HMAC secret shorter than 32 bytes.
// The issuer keeps copies of Audience and Key: changing them afterwards
// changes nothing in what it mints.
func NewJWTIssuer(opts JWTIssuerOptions) (*JWTIssuer, error) {
	if opts.Issuer == "" {
		return nil, errors.New("mcpauth: JWT issuer: empty Issuer")
	}
	if opts.TTL < 0 {
		return nil, errors.New("mcpauth: JWT issuer: negative TTL")
	}
	i := &JWTIssuer{
		issuer:   opts.Issuer,
		kid:      opts.KeyID,
		audience: slices.Clone(opts.Audience),
		ttl:      opts.TTL,
		now:      opts.Clock,
	}
	if i.ttl == 0 {
		i.ttl = time.Hour
	}
	if i.now == nil {
		i.now = time.Now
	}
	switch k := opts.Key.(type) {
	case []byte:
		if len(k) < minHMACSecretLen {
			return nil, fmt.Errorf("mcpauth: JWT issuer: the HMAC secret is shorter than %d bytes", minHMACSecretLen)
		}
		i.key, i.method = slices.Clone(k), jwt.SigningMethodHS256
	case *ecdsa.PrivateKey:
		if k == nil || k.D == nil || !validECDSAPoint(&k.PublicKey) {
			return nil, errors.New("mcpauth: JWT issuer: bad ECDSA key")
		}
		if k.Curve != elliptic.P256() {
			return nil, errors.New("mcpauth: JWT issuer: the ECDSA key is not on P-256")
		}
		// A copy, as of every key: what the caller does with theirs later
		// must not change what this issuer signs with.
		pub := clonePublicKey(&k.PublicKey).(*ecdsa.PublicKey)
		i.key, i.method = &ecdsa.PrivateKey{PublicKey: *pub, D: new(big.Int).Set(k.D)}, jwt.SigningMethodES256
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, errors.New("mcpauth: JWT issuer: bad Ed25519 key")
		}
		i.key, i.method = slices.Clone(k), jwt.SigningMethodEdDSA
	default:
		return nil, fmt.Errorf("mcpauth: JWT issuer: unsupported key type %T", opts.Key)
	}
	if i.kid == "" {
		i.kid = thumbprint(i.PublicKey())
	}
	hdr := map[string]string{"alg": i.method.Alg(), "typ": "at+jwt"}
	if i.kid != "" {
		hdr["kid"] = i.kid
	}
	b, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("mcpauth: JWT issuer: %w", err)
	}
	i.header = base64.RawURLEncoding.EncodeToString(b)
	return i, nil
}

// PublicKey returns the key that verifies the issuer's tokens: an
// *ecdsa.PublicKey or an ed25519.PublicKey, a copy of the caller's own. It
// is nil for an HMAC issuer, whose secret both signs and verifies.
func (i *JWTIssuer) PublicKey() crypto.PublicKey {
	switch k := i.key.(type) {
	case *ecdsa.PrivateKey:
		return clonePublicKey(&k.PublicKey)
	case ed25519.PrivateKey:
		return k.Public()
	}
	return nil
}

// TrustedIssuer returns the configuration under which a [JWTVerifier]
// accepts this issuer's tokens for the given audiences (nil means the
// issuer's own Audience), with only this issuer's algorithm allowed. It
// shares no memory with the issuer or the arguments: changing it changes
// neither.
func (i *JWTIssuer) TrustedIssuer(audiences ...string) TrustedIssuer {
	if audiences == nil {
		audiences = i.audience
	}
	audiences = slices.Clone(audiences)
	ti := TrustedIssuer{Issuer: i.issuer, Audiences: audiences, Algorithms: []string{i.method.Alg()}}
	if secret, ok := i.key.([]byte); ok {
		ti.Secret = slices.Clone(secret)
	} else {
		ti.PublicKeys = []crypto.PublicKey{i.PublicKey()}
	}
	return ti
}

// JWKS returns the issuer's public key as a JSON Web Key Set (RFC 7517 §5),
// to be served at the issuer's jwks_uri. It is an error for an HMAC issuer,
// whose key must stay secret.
func (i *JWTIssuer) JWKS() ([]byte, error) {
	pub := i.PublicKey()
	if pub == nil {
		return nil, errors.New("mcpauth: JWT issuer: an HMAC key has no public JWKS")
	}
	jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		ALG: jwkset.ALG(i.method.Alg()), KID: i.kid, USE: jwkset.UseSig,
	}})
	if err != nil {
		return nil, fmt.Errorf("mcpauth: JWT issuer: %w", err)
	}
	return json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
}

// registeredClaims are the claims TokenClaims.Extra may not set: those Mint
// sets, and those a verifier with the default RoleClaims and ScopeClaims
// merges into the same principal fields (so Extra cannot widen Scopes,
// Roles or ClientID behind the caller's back).
var registeredClaims = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "roles", "client_id", "scp", "permissions", "role", "azp"}

// Mint returns a signed token for the claims. Every token has a random jti,
// so that it can be revoked alone.
func (i *JWTIssuer) Mint(c TokenClaims) (string, error) {
	if c.Subject == "" {
		return "", errors.New("mcpauth: minting a token: empty Subject")
	}
	if c.TTL < 0 {
		return "", errors.New("mcpauth: minting a token: negative TTL")
	}
	aud := c.Audience
	if aud == nil {
		aud = i.audience
	}
	ttl := c.TTL
	if ttl == 0 {
		ttl = i.ttl
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("mcpauth: minting a token: %w", err)
	}
	now := i.now()
	claims := make(map[string]any, len(registeredClaims)+len(c.Extra))
	for k, v := range c.Extra {
		if slices.Contains(registeredClaims, k) {
			return "", fmt.Errorf("mcpauth: minting a token: Extra may not set %q", k)
		}
		claims[k] = v
	}
	claims["iss"] = i.issuer
	claims["sub"] = c.Subject
	switch len(aud) {
	case 0:
	case 1:
		claims["aud"] = aud[0]
	default:
		claims["aud"] = aud
	}
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(ttl).Unix()
	claims["jti"] = base64.RawURLEncoding.EncodeToString(jti[:])
	if c.ClientID != "" {
		claims["client_id"] = c.ClientID
	}
	if len(c.Scopes) > 0 {
		claims["scope"] = strings.Join(c.Scopes, " ")
	}
	if len(c.Roles) > 0 {
		claims["roles"] = c.Roles
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("mcpauth: minting a token: %w", err)
	}
	signed := i.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := i.method.Sign(signed, i.key)
	if err != nil {
		return "", fmt.Errorf("mcpauth: minting a token: %w", err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// thumbprint returns the RFC 7638 JWK thumbprint of a public key, or "" for
// none.
func thumbprint(pub any) string {
	var b []byte
	enc := base64.RawURLEncoding
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		// Bytes() gives the uncompressed point 0x04 || X || Y.
		pt, err := k.Bytes()
		if err != nil {
			return ""
		}
		n := (len(pt) - 1) / 2
		b = fmt.Appendf(nil, `{"crv":"P-256","kty":"EC","x":%q,"y":%q}`, enc.EncodeToString(pt[1:1+n]), enc.EncodeToString(pt[1+n:]))
	case ed25519.PublicKey:
		b = fmt.Appendf(nil, `{"crv":"Ed25519","kty":"OKP","x":%q}`, enc.EncodeToString(k))
	default:
		return ""
	}
	sum := sha256.Sum256(b)
	return enc.EncodeToString(sum[:])
}
