package authserver

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/mcpauth"
)

// keyRing holds the signing keys. Time is cut into epochs of one rotation
// period; epoch e's key signs during e, is published from the start of e-1
// and stays published until the end of e+1, so that a token it signed at
// the very end of e (valid for at most AccessTokenTTL ≤ the period) always
// finds its key published.
//
// With a secret, each epoch's key is stored sealed under
// "as.key:<alg>:<epoch>", created with Store.Create: replicas that race to
// create one all end up with the winner's, so that no coordination is
// needed. Without a secret, keys are made and kept in this process only.
type keyRing struct {
	s      *Server
	alg    string
	period time.Duration
	aead   cipher.AEAD // nil: keys in memory only

	mu     sync.Mutex
	cur    atomic.Pointer[ringState]
	memory map[int64]any // epoch → private key, when aead is nil
}

// ringState is the keys around one epoch.
type ringState struct {
	epoch  int64
	signer *mcpauth.JWTIssuer
	// published are the issuers of epochs e-1 (when there is one), e and
	// e+1, whose public keys verify tokens and make the JWKS.
	published []*mcpauth.JWTIssuer
	jwks      []byte
}

const keyRecordPrefix = "as.key"

func newKeyRing(s *Server, opts *Options, sealKey []byte) (*keyRing, error) {
	k := &keyRing{s: s, alg: opts.SigningAlgorithm, period: opts.KeyRotation}
	switch k.alg {
	case "":
		k.alg = "ES256"
	case "ES256", "EdDSA":
	default:
		return nil, fmt.Errorf("mcpauth: authserver: SigningAlgorithm %q is not ES256 or EdDSA", k.alg)
	}
	if k.period == 0 {
		k.period = DefaultKeyRotation
	}
	if k.period < s.accessTTL {
		return nil, errors.New("mcpauth: authserver: KeyRotation is shorter than AccessTokenTTL")
	}
	if sealKey == nil {
		k.memory = map[int64]any{}
		return k, nil
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, fmt.Errorf("mcpauth: authserver: %w", err)
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("mcpauth: authserver: %w", err)
	}
	return k, nil
}

func (k *keyRing) epoch(t time.Time) int64 {
	return t.UnixNano() / int64(k.period)
}

// current returns the keys of the current epoch, loading or creating them
// when the epoch has changed since the last call.
func (k *keyRing) current(ctx context.Context) (*ringState, error) {
	e := k.epoch(k.s.now())
	if st := k.cur.Load(); st != nil && st.epoch == e {
		return st, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if st := k.cur.Load(); st != nil && st.epoch == e {
		return st, nil
	}
	st := &ringState{epoch: e}
	for _, ep := range []int64{e - 1, e, e + 1} {
		key, err := k.key(ctx, ep, ep != e-1)
		if err != nil {
			return nil, err
		}
		if key == nil {
			continue // no key was made for the previous epoch
		}
		iss, err := mcpauth.NewJWTIssuer(mcpauth.JWTIssuerOptions{Issuer: k.s.issuer, Key: key, TTL: k.s.accessTTL, Clock: k.s.now})
		if err != nil {
			return nil, fmt.Errorf("mcpauth: authserver: %w", err)
		}
		st.published = append(st.published, iss)
		if ep == e {
			st.signer = iss
		}
	}
	jwks, err := joinJWKS(st.published)
	if err != nil {
		return nil, err
	}
	st.jwks = jwks
	if k.memory != nil {
		for ep := range k.memory {
			if ep < e-1 {
				delete(k.memory, ep)
			}
		}
	}
	k.cur.Store(st)
	return st, nil
}

// key returns the private key of an epoch, making it when create is set
// and there is none; nil when there is none and create is not set.
func (k *keyRing) key(ctx context.Context, ep int64, create bool) (any, error) {
	if k.memory != nil {
		if key := k.memory[ep]; key != nil || !create {
			return key, nil
		}
		key, err := k.generate()
		if err != nil {
			return nil, err
		}
		k.memory[ep] = key
		return key, nil
	}
	name := keyRecordPrefix + ":" + k.alg + ":" + strconv.FormatInt(ep, 10)
	b, err := k.s.store.Get(ctx, name)
	if err == nil {
		return k.unseal(name, b)
	}
	if !errors.Is(err, mcpauth.ErrNotFound) {
		return nil, fmt.Errorf("mcpauth: authserver: reading a signing key: %w", err)
	}
	if !create {
		return nil, nil
	}
	key, err := k.generate()
	if err != nil {
		return nil, err
	}
	sealed, err := k.seal(name, key)
	if err != nil {
		return nil, err
	}
	// The record outlives the last epoch the key is published in.
	ttl := time.Duration(ep+3)*k.period - time.Duration(k.s.now().UnixNano())
	switch err := k.s.store.Create(ctx, name, sealed, ttl); {
	case err == nil:
		return key, nil
	case errors.Is(err, mcpauth.ErrExists):
		// Another replica made this epoch's key first: use that one.
		b, err := k.s.store.Get(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("mcpauth: authserver: reading a signing key: %w", err)
		}
		return k.unseal(name, b)
	default:
		return nil, fmt.Errorf("mcpauth: authserver: storing a signing key: %w", err)
	}
}

func (k *keyRing) generate() (any, error) {
	if k.alg == "EdDSA" {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// sealedKey is a signing key as stored, before sealing.
type sealedKey struct {
	Alg   string `json:"alg"`
	PKCS8 []byte `json:"pkcs8"`
}

// seal encrypts a key with AES-256-GCM under the secret, with the store
// key as additional data, so that a sealed key cannot be moved to another
// epoch or algorithm.
func (k *keyRing) seal(name string, key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("mcpauth: authserver: %w", err)
	}
	plain, err := json.Marshal(sealedKey{Alg: k.alg, PKCS8: der})
	if err != nil {
		return nil, fmt.Errorf("mcpauth: authserver: %w", err)
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("mcpauth: authserver: %w", err)
	}
	sealed := k.aead.Seal(nonce, nonce, plain, []byte(name))
	return []byte("v1." + base64.RawURLEncoding.EncodeToString(sealed)), nil
}

var errSealedKey = errors.New("mcpauth: authserver: a stored signing key does not open with this Secret")

func (k *keyRing) unseal(name string, b []byte) (any, error) {
	v, ok := strings.CutPrefix(string(b), "v1.")
	if !ok {
		return nil, errSealedKey
	}
	sealed, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(sealed) < k.aead.NonceSize() {
		return nil, errSealedKey
	}
	n := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
	if err != nil {
		return nil, errSealedKey
	}
	var sk sealedKey
	if err := json.Unmarshal(plain, &sk); err != nil || sk.Alg != k.alg {
		return nil, errSealedKey
	}
	key, err := x509.ParsePKCS8PrivateKey(sk.PKCS8)
	if err != nil {
		return nil, errSealedKey
	}
	if e, ok := key.(*ecdsa.PrivateKey); ok {
		return e, nil
	}
	if e, ok := key.(ed25519.PrivateKey); ok {
		return e, nil
	}
	return nil, errSealedKey
}

// joinJWKS makes one key set of the issuers' keys.
func joinJWKS(issuers []*mcpauth.JWTIssuer) ([]byte, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	for _, iss := range issuers {
		b, err := iss.JWKS()
		if err != nil {
			return nil, fmt.Errorf("mcpauth: authserver: %w", err)
		}
		var one struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(b, &one); err != nil {
			return nil, fmt.Errorf("mcpauth: authserver: %w", err)
		}
		set.Keys = append(set.Keys, one.Keys...)
	}
	return json.Marshal(set)
}
