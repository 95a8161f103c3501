package mcpauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/time/rate"
)

const minRSABits = 2048

// jwksRetryInterval is the shortest time between two fetches of a JWKS
// caused by tokens while the last fetch failed.
const jwksRetryInterval = 10 * time.Second

// trustedIssuer is a TrustedIssuer made ready for use.
type trustedIssuer struct {
	issuer       string
	method       Method
	audiences    []string
	skipAudience bool
	// requireAccessTokenType refuses tokens not typed "at+jwt".
	requireAccessTokenType bool
	acceptBound            bool // accept cnf-bound tokens as bearer tokens
	roleClaims             []string
	scopeClaims            []string
	algs                   map[string]jwt.SigningMethod // the allow-list
	keys                   []any                        // local keys
	jwks                   *jwksSource                  // or a JWKS URL
}

var (
	hmacAlgs  = []string{"HS256", "HS384", "HS512"}
	rsaAlgs   = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	asymAlgs  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	allAlgs   = append(slices.Clone(hmacAlgs), asymAlgs...)
	errNoKeys = errors.New("no keys: set Secret, PublicKeyPEM, PublicKeys or JWKSURL")
)

func newTrustedIssuer(ctx context.Context, ti *TrustedIssuer, opts *JWTVerifierOptions, events EventSink) (*trustedIssuer, error) {
	if ti.Issuer == "" {
		return nil, errors.New("empty Issuer")
	}
	iss := &trustedIssuer{
		issuer:                 ti.Issuer,
		method:                 ti.Method,
		audiences:              slices.Clone(ti.Audiences),
		skipAudience:           ti.SkipAudienceCheck,
		requireAccessTokenType: ti.RequireAccessTokenType,
		acceptBound:            ti.AcceptBoundTokens,
		roleClaims:             slices.Clone(ti.RoleClaims),
		scopeClaims:            slices.Clone(ti.ScopeClaims),
		algs:                   map[string]jwt.SigningMethod{},
	}
	switch iss.method {
	case "":
		iss.method = MethodJWT
	case MethodJWT, MethodOAuth:
	default:
		return nil, fmt.Errorf("Method %q is not jwt or oauth", ti.Method)
	}
	if len(iss.audiences) == 0 && !iss.skipAudience {
		return nil, errors.New("no Audiences (set SkipAudienceCheck to accept tokens meant for any service)")
	}
	for _, a := range iss.audiences {
		if a == "" {
			return nil, errors.New("empty audience")
		}
	}
	if iss.roleClaims == nil {
		iss.roleClaims = []string{"role", "roles"}
	}
	if iss.scopeClaims == nil {
		iss.scopeClaims = []string{"scope", "scp", "permissions"}
	}

	// The keys, and the algorithms they can verify.
	var possible []string
	if ti.Secret != nil {
		if len(ti.Secret) < minHMACSecretLen {
			return nil, fmt.Errorf("the HMAC secret is shorter than %d bytes", minHMACSecretLen)
		}
		iss.keys = append(iss.keys, slices.Clone(ti.Secret))
		// RFC 7518 §3.2: the key must be at least as long as the hash.
		possible = append(possible, "HS256")
		if len(ti.Secret) >= 48 {
			possible = append(possible, "HS384")
		}
		if len(ti.Secret) >= 64 {
			possible = append(possible, "HS512")
		}
	}
	pemKeys, err := parsePublicKeysPEM(ti.PublicKeyPEM)
	if err != nil {
		return nil, err
	}
	for _, k := range ti.PublicKeys {
		// A key is a pointer or a slice: the caller's copy may change.
		pemKeys = append(pemKeys, clonePublicKey(k))
	}
	for _, k := range pemKeys {
		algs, err := publicKeyAlgs(k)
		if err != nil {
			return nil, err
		}
		iss.keys = append(iss.keys, k)
		possible = append(possible, algs...)
	}
	if ti.JWKSURL != "" {
		if len(iss.keys) > 0 {
			return nil, errors.New("set JWKSURL or local keys, not both")
		}
		u, err := url.Parse(ti.JWKSURL)
		if err != nil {
			return nil, errors.New("JWKSURL is not an http(s) URL")
		}
		if err := checkJWKSURL(u, ti.AllowHTTPJWKS); err != nil {
			return nil, err
		}
		warnPlainHTTP(events, "JWKSURL", ti.JWKSURL)
		// A JWKS is public, so it never holds HMAC keys worth trusting.
		possible = asymAlgs
	} else if len(iss.keys) == 0 {
		return nil, errNoKeys
	}
	allowed := ti.Algorithms
	if allowed == nil {
		allowed = possible
	}
	for _, alg := range allowed {
		if !slices.Contains(possible, alg) {
			return nil, fmt.Errorf("algorithm %q cannot be verified with the configured keys", alg)
		}
		iss.algs[alg] = signingMethod(alg)
	}
	if len(iss.algs) == 0 {
		return nil, errors.New("no algorithm allowed")
	}
	if ti.JWKSURL != "" {
		iss.jwks, err = newJWKSSource(ctx, ti.Issuer, ti.JWKSURL, ti.AllowHTTPJWKS, opts, events)
		if err != nil {
			return nil, err
		}
	}
	return iss, nil
}

// algorithm returns the signing method for alg if the issuer allows it.
func (iss *trustedIssuer) algorithm(alg string) jwt.SigningMethod {
	return iss.algs[alg]
}

// verifySignature checks sig over signed with the issuer's keys. It returns
// the failure's class and a fixed detail, or a nil class.
func (iss *trustedIssuer) verifySignature(method jwt.SigningMethod, hdr jwtHeader, signed string, sig []byte) (detail string, class error) {
	alg := method.Alg()
	if iss.jwks != nil {
		return iss.jwks.verify(method, hdr, signed, sig)
	}
	// Local keys carry no kid to select by; there are few of them, and each
	// is tried only with an algorithm of its own type.
	tried := false
	for _, k := range iss.keys {
		if !keyFits(alg, k) {
			continue
		}
		tried = true
		if method.Verify(signed, sig, k) == nil {
			return "", nil
		}
	}
	if !tried {
		return "no key for algorithm", errTokenAlgorithm
	}
	return "", errTokenSignature
}

// keyFits reports whether key may verify alg: the tie between an algorithm
// and a key type that keeps a public key from being used as an HMAC secret.
func keyFits(alg string, key any) bool {
	switch k := key.(type) {
	case []byte:
		return slices.Contains(hmacAlgs, alg)
	case *rsa.PublicKey:
		return slices.Contains(rsaAlgs, alg) && k.N != nil && k.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA" && len(k) == ed25519.PublicKeySize
	}
	return false
}

// publicKeyAlgs returns the algorithms a configured public key verifies, or
// an error for a key that is unusable or too weak.
func publicKeyAlgs(key any) ([]string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil || k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key shorter than %d bits", minRSABits)
		}
		return rsaAlgs, nil
	case *ecdsa.PublicKey:
		if k == nil {
			return nil, errors.New("nil ECDSA key")
		}
		var algs []string
		switch k.Curve {
		case elliptic.P256():
			algs = []string{"ES256"}
		case elliptic.P384():
			algs = []string{"ES384"}
		case elliptic.P521():
			algs = []string{"ES512"}
		default:
			return nil, errors.New("ECDSA key on an unsupported curve")
		}
		// ecdsa.Verify panics on a key without a point, at request time.
		if !validECDSAPoint(k) {
			return nil, errors.New("ECDSA key is not a point on its curve")
		}
		return algs, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key")
		}
		return []string{"EdDSA"}, nil
	case []byte, string:
		return nil, errors.New("an HMAC secret goes in Secret, not PublicKeys")
	}
	return nil, fmt.Errorf("unsupported public key type %T", key)
}

// clonePublicKey returns a copy of key that shares no memory with it, so
// that a configuration changed after a constructor returns (a key's bytes,
// an ECDSA point, an RSA modulus) changes nothing in what it built. Keys of
// other types are returned as they are, for publicKeyAlgs to refuse.
func clonePublicKey(key any) any {
	cloneInt := func(i *big.Int) *big.Int {
		if i == nil {
			return nil
		}
		return new(big.Int).Set(i)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k != nil {
			return &rsa.PublicKey{N: cloneInt(k.N), E: k.E}
		}
	case *ecdsa.PublicKey:
		if k != nil {
			return &ecdsa.PublicKey{Curve: k.Curve, X: cloneInt(k.X), Y: cloneInt(k.Y)}
		}
	case ed25519.PublicKey:
		return slices.Clone(k)
	}
	return key
}

// validECDSAPoint reports whether k is a point on its curve.
func validECDSAPoint(k *ecdsa.PublicKey) bool {
	if k == nil || k.Curve == nil || k.X == nil || k.Y == nil {
		return false
	}
	_, err := k.Bytes() // which checks that the point is on the curve
	return err == nil
}

// parsePublicKeysPEM reads every PEM block of data as a public key.
func parsePublicKeysPEM(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			// Refusing private keys here keeps them out of a verifier's
			// configuration, where they have no business.
			return nil, fmt.Errorf("PEM block %d is a %q, not a public key or certificate", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 && len(slicesTrimSpace(data)) > 0 {
		return nil, errors.New("PublicKeyPEM holds no PEM block")
	}
	return keys, nil
}

func slicesTrimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// jwksSource is one issuer's JWKS URL, fetched and refreshed by
// github.com/MicahParks/jwkset and read through keyfunc/v3. The keys also sit
// in an index by kid, rebuilt at each fetch, so that a token with a known
// kid costs one map lookup.
type jwksSource struct {
	url     string          // for the log only: see logURL
	keyfunc keyfunc.Keyfunc // reads, and refetches the set on an unknown kid
	refetch *rate.Limiter   // how often an unknown kid may cause a refetch
	retry   *rate.Limiter   // the same, while the last fetch failed
	index   atomic.Pointer[jwksIndex]
	failed  atomic.Bool // the last fetch failed
	events  EventSink
	issuer  string
}

type jwksIndex struct {
	byKID map[string]jwksKey
	all   []jwksKey
	// unusedKID is a kid that no key of the set has, not even one left out
	// of the index: reading it through keyfunc always refetches the set.
	// (A token without a kid cannot use "" for that: a set whose keys have
	// no kid holds a key under "".)
	unusedKID string
}

type jwksKey struct {
	alg string // the JWK's alg, if it names one
	key any
}

func newJWKSSource(ctx context.Context, issuer, u string, allowHTTP bool, opts *JWTVerifierOptions, events EventSink) (*jwksSource, error) {
	s := &jwksSource{url: logURL(u), events: events, issuer: issuer}
	s.index.Store(&jwksIndex{})
	client := &http.Client{Timeout: defaultJWKSTimeout}
	if opts.HTTPClient != nil {
		// A copy: the caller's client is theirs, and may serve others.
		c := *opts.HTTPClient
		client = &c
	}
	client.Transport = limitBody{client.Transport}
	client.CheckRedirect = jwksRedirectPolicy(allowHTTP, client.CheckRedirect)
	refresh := opts.JWKSRefreshInterval
	if refresh == 0 {
		refresh = defaultJWKSRefresh
	}
	refetch := opts.JWKSRefetchInterval
	if refetch == 0 {
		refetch = defaultJWKSRefetch
	}
	// The first fetch happens here, through indexStorage.KeyReplaceAll.
	s.failed.Store(true)
	store, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
		Client:                    client,
		Ctx:                       ctx,
		HTTPTimeout:               defaultJWKSTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       s.fetchFailed,
		RefreshInterval:           refresh,
		Storage:                   &indexStorage{MemoryJWKSet: jwkset.NewMemoryStorage(), src: s},
	})
	if err != nil {
		return nil, errors.New("JWKSURL cannot be used")
	}
	// jwkset's own limiter makes a reader wait for its turn; s.refetch
	// instead refuses at once, so that a flood of made-up kids neither
	// reaches the provider nor queues requests. What passes it may fetch.
	s.refetch = rate.NewLimiter(rate.Every(refetch), 1)
	s.retry = rate.NewLimiter(rate.Every(min(refetch, jwksRetryInterval)), 1)
	httpClient, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{u: store},
		RateLimitWaitMax:  defaultJWKSTimeout, // bounds the fetch
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		return nil, errors.New("JWKSURL cannot be used")
	}
	s.keyfunc, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: httpClient})
	if err != nil {
		return nil, errors.New("JWKSURL cannot be used")
	}
	return s, nil
}

// checkJWKSURL says whether u may serve a key set: an http(s) URL with a
// host, and plain http only to loopback unless allowHTTP.
func checkJWKSURL(u *url.URL, allowHTTP bool) error {
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("JWKSURL is not an http(s) URL")
	}
	// Whoever can change the key set in transit can sign tokens.
	if u.Scheme == "http" && !isLoopback(u.Hostname()) && !allowHTTP {
		return errors.New("JWKSURL is plain http to a host that is not loopback (use https, or set AllowHTTPJWKS)")
	}
	return nil
}

// maxJWKSRedirects bounds the redirects a JWKS fetch follows (net/http's
// own limit is 10). A provider's jwks_uri rarely redirects at all.
const maxJWKSRedirects = 3

var errJWKSRedirect = errors.New("mcpauth: JWKS redirect refused")

// jwksRedirectPolicy is the CheckRedirect of JWKS fetches. net/http follows
// redirects anywhere, https to plain http included, which would let whoever
// can answer the one request with a redirect hand the verifier a key set
// over a connection anyone on the path can change. A redirect is followed
// only to a URL that checkJWKSURL accepts as JWKSURL, never from https to
// http (even on loopback, even with AllowHTTPJWKS), and at most
// maxJWKSRedirects times; then next, the caller's own CheckRedirect, if any,
// has its say.
func jwksRedirectPolicy(allowHTTP bool, next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) > maxJWKSRedirects || checkJWKSURL(req.URL, allowHTTP) != nil {
			return errJWKSRedirect
		}
		if req.URL.Scheme != "https" && slices.ContainsFunc(via, func(r *http.Request) bool { return r.URL.Scheme == "https" }) {
			return errJWKSRedirect
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
}

// logURL is a JWKS URL as the log shows it: without the user information,
// query and fragment, which may hold credentials (a password, an API key).
func logURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User, u.RawQuery, u.Fragment, u.RawFragment = nil, "", "", ""
	return u.String()
}

func (s *jwksSource) fetchFailed(ctx context.Context, err error) {
	s.failed.Store(true)
	// The error text may quote the response, or a redirect's URL with its
	// query; the URL as configured (see logURL) and the fact suffice.
	e := Event{Kind: EventKeySource, Outcome: OutcomeFailure, Reason: reasonJWKSDown, Issuer: s.issuer, Detail: s.url}
	if errors.Is(err, errJWKSRedirect) {
		e.Reason = reasonJWKSRedirect
	}
	emit(ctx, s.events, e)
}

// indexStorage is the jwkset storage behind a JWKS URL; every successful
// fetch replaces its keys, and it rebuilds the index then.
type indexStorage struct {
	*jwkset.MemoryJWKSet
	src *jwksSource
}

func (st *indexStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	idx := &jwksIndex{byKID: make(map[string]jwksKey, len(given))}
	kids := make(map[string]bool, len(given))
	for _, j := range given {
		m := j.Marshal()
		kids[m.KID] = true
		// A key meant for encryption, by use or by key_ops (RFC 7517 §4.2,
		// §4.3), never verifies a token.
		if m.USE == jwkset.UseEnc || (len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify)) {
			continue
		}
		k := jwksKey{alg: m.ALG.String(), key: publicOf(j.Key())}
		idx.all = append(idx.all, k)
		if m.KID != "" {
			idx.byKID[m.KID] = k
		}
	}
	idx.unusedKID = "mcpauth-refetch"
	for kids[idx.unusedKID] {
		idx.unusedKID += "-"
	}
	if err := st.MemoryJWKSet.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	st.src.index.Store(idx)
	st.src.failed.Store(false)
	return nil
}

// publicOf returns the public half of a private key, should a JWKS hold one.
func publicOf(key any) any {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	case []byte:
		return nil // oct keys are never trusted from a JWKS
	}
	return key
}

func (s *jwksSource) verify(method jwt.SigningMethod, hdr jwtHeader, signed string, sig []byte) (detail string, class error) {
	alg := method.Alg()
	if hdr.kid == "" {
		// Without a kid, try the set's keys of the right type.
		for attempt := 0; ; attempt++ {
			idx := s.index.Load()
			tried := false
			for _, k := range idx.all {
				if (k.alg == "" || k.alg == alg) && keyFits(alg, k.key) {
					tried = true
					if method.Verify(signed, sig, k.key) == nil {
						return "", nil
					}
				}
			}
			// No key verified it. The issuer may have rotated in a new key
			// since the last fetch, as with an unknown kid: fetch the set
			// again, as often as refetchAllowed says (keyfunc refetches on a
			// kid that no key has), and try again if the set changed.
			if attempt == 0 && s.refetchAllowed() {
				_, _ = s.keyfunc.Keyfunc(&jwt.Token{Header: map[string]any{"kid": idx.unusedKID, "alg": alg}})
				if s.index.Load() != idx {
					continue
				}
			}
			switch {
			case tried:
				return "", errTokenSignature
			case s.failed.Load():
				return "JWKS unavailable", errTokenUnavailable
			}
			return "no key for algorithm", errTokenUnknownKey
		}
	}
	k, ok := s.index.Load().byKID[hdr.kid]
	if !ok {
		// An unknown kid: maybe the issuer rotated its keys. keyfunc refetches
		// the set, as often as refetchAllowed says.
		if s.refetchAllowed() {
			// Its error says nothing the index does not: whether the kid is
			// known now.
			_, _ = s.keyfunc.Keyfunc(&jwt.Token{Header: map[string]any{"kid": hdr.kid, "alg": alg}})
			k, ok = s.index.Load().byKID[hdr.kid]
		}
		if !ok {
			if s.failed.Load() {
				return "JWKS unavailable", errTokenUnavailable
			}
			return "unknown kid", errTokenUnknownKey
		}
	}
	if (k.alg != "" && k.alg != alg) || !keyFits(alg, k.key) {
		return "algorithm does not fit the key", errTokenAlgorithm
	}
	if method.Verify(signed, sig, k.key) != nil {
		return "", errTokenSignature
	}
	return "", nil
}

// refetchAllowed says whether a token may cause a fetch of the set now: once
// per JWKSRefetchInterval, or, while the last fetch failed, once per
// jwksRetryInterval (if shorter), so that service resumes soon after the
// provider does, while a flood still causes few fetches.
func (s *jwksSource) refetchAllowed() bool {
	if s.failed.Load() {
		return s.retry.Allow()
	}
	return s.refetch.Allow()
}

// maxJWKSSize bounds a JWKS response. Real sets hold a few keys, a few KiB.
const maxJWKSSize = 1 << 20

// limitBody cuts JWKS responses at maxJWKSSize, since jwkset decodes the
// body as it comes.
type limitBody struct{ next http.RoundTripper }

func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	next := l.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxJWKSSize), resp.Body}
	return resp, nil
}

// isLoopback reports whether host names this machine: localhost or a
// loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// matchesAudience reports whether one of aud names this server.
func (iss *trustedIssuer) matchesAudience(aud []string) bool {
	for _, want := range iss.audiences {
		if oauthex.MatchesResource(aud, want) {
			return true
		}
	}
	return false
}

// signingMethod returns golang-jwt's implementation of alg, used here for
// the cryptography alone: parsing and the choice of key are this package's.
func signingMethod(alg string) jwt.SigningMethod {
	switch alg {
	case "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return jwt.GetSigningMethod(alg)
	}
	return nil
}
