package mcpauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mcpauth/mcpauth/internal/header"
)

// apiKeyHeader is X-API-Key in the canonical form net/http stores it under.
const apiKeyHeader = "X-Api-Key"

// APIKeyPrefix starts every key made by [GenerateAPIKey]. It lets secret
// scanners recognise a leaked key, and lets [APIKeys] reject a key whose
// checksum is wrong (a typo, a truncated paste) before looking it up. A
// generated key is 54 bytes, short enough for SHA-256 to hash in one block.
const APIKeyPrefix = "mcpk_"

const (
	keyRandomLen   = 43 // base62 characters: 43 × log2(62) ≈ 256.03 bits
	keyChecksumLen = 6  // base62 characters of a CRC-32C: 62^6 > 2^32
	generatedLen   = len(APIKeyPrefix) + keyRandomLen + keyChecksumLen

	// MinAPIKeyLen is the shortest key [NewAPIKeys] accepts. A short key can
	// be guessed; generate keys with [GenerateAPIKey].
	MinAPIKeyLen = 16
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// isBase62 is a lookup table for the characters of base62.
var isBase62 = func() (t [256]bool) {
	for i := range len(base62) {
		t[base62[i]] = true
	}
	return t
}()

// EnvAPIKeys is the environment variable [APIKeysFromEnv] reads.
const EnvAPIKeys = "MCP_API_KEYS"

// An APIKey configures one key of [APIKeys].
type APIKey struct {
	// Key is the secret. It is hashed at once; APIKeys never keeps it.
	Key string
	// Hash is the key's hex SHA-256 (see [HashAPIKey]), for configuring a key
	// without holding its secret. Set exactly one of Key and Hash.
	Hash string
	// Subject is the principal's subject. Empty means "apikey-" followed by
	// the key's ID.
	Subject string
	// Roles and Scopes are given to the principal as they are.
	Roles  []string
	Scopes []string
	// ExpiresAt is when the key stops working. Zero means never.
	ExpiresAt time.Time
}

// APIKeys authenticates requests by API key, sent as "X-API-Key: <key>" or
// "Authorization: Bearer <key>". Its method is [MethodAPIKey].
//
// Only SHA-256 hashes of the keys are stored. Looking a key up costs one hash,
// one map probe and one constant-time comparison, however many keys there are.
// Several keys may be valid at once, so a key can be rotated without downtime:
// add the new key, move clients over, revoke the old one.
//
// A bearer value shaped like a JWT is left to a JWT authenticator. APIKeys is
// safe for concurrent use.
type APIKeys struct {
	mu    sync.Mutex                             // serialises writers
	table atomic.Pointer[map[[32]byte]*keyEntry] // read without locking
	now   func() time.Time
}

type keyEntry struct {
	hash      [32]byte
	principal *Principal
	expiresAt time.Time
	revoked   atomic.Bool
}

// NewAPIKeys returns an authenticator for the keys. It returns an error for a
// key shorter than [MinAPIKeyLen], one with characters other than printable
// ASCII, a generated key whose checksum is wrong, or a key given twice. The
// error names the key by position, never by its text.
func NewAPIKeys(keys ...APIKey) (*APIKeys, error) {
	k := &APIKeys{now: time.Now}
	table := make(map[[32]byte]*keyEntry, len(keys))
	for i, key := range keys {
		e, err := newKeyEntry(key)
		if err != nil {
			return nil, fmt.Errorf("mcpauth: API key %d: %w", i+1, err)
		}
		if _, dup := table[e.hash]; dup {
			return nil, fmt.Errorf("mcpauth: API key %d: the same key is configured twice", i+1)
		}
		table[e.hash] = e
	}
	k.table.Store(&table)
	return k, nil
}

// APIKeysFromEnv returns an authenticator for the keys in the MCP_API_KEYS
// environment variable, in the format [ParseAPIKeys] reads. It is an error
// for the variable to hold no key.
func APIKeysFromEnv() (*APIKeys, error) {
	keys, err := ParseAPIKeys(os.Getenv(EnvAPIKeys))
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("mcpauth: %s holds no API key", EnvAPIKeys)
	}
	return NewAPIKeys(keys...)
}

// ParseAPIKeys reads a comma-separated list of keys, each entry KEY,
// KEY:SUBJECT or KEY:SUBJECT:ROLE|ROLE. White space around entries and fields
// (trailing newlines included) is trimmed and empty entries are ignored. A
// malformed entry is an error that names its position, never its text.
func ParseAPIKeys(s string) ([]APIKey, error) {
	var keys []APIKey
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		fields := strings.Split(entry, ":")
		if len(fields) > 3 {
			return nil, fmt.Errorf("mcpauth: %s entry %d: want KEY, KEY:SUBJECT or KEY:SUBJECT:ROLE|ROLE", EnvAPIKeys, i+1)
		}
		for j := range fields {
			fields[j] = strings.TrimSpace(fields[j])
		}
		key := APIKey{Key: fields[0]}
		if err := checkKeyText(key.Key); err != nil {
			return nil, fmt.Errorf("mcpauth: %s entry %d: %w", EnvAPIKeys, i+1, err)
		}
		if len(fields) > 1 {
			if fields[1] == "" {
				return nil, fmt.Errorf("mcpauth: %s entry %d: empty subject", EnvAPIKeys, i+1)
			}
			key.Subject = fields[1]
		}
		if len(fields) > 2 {
			for _, role := range strings.Split(fields[2], "|") {
				role = strings.TrimSpace(role)
				if role == "" {
					return nil, fmt.Errorf("mcpauth: %s entry %d: empty role", EnvAPIKeys, i+1)
				}
				key.Roles = append(key.Roles, role)
			}
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// GenerateAPIKey returns a new key: [APIKeyPrefix], 256 bits from
// crypto/rand in base62, and a CRC-32C checksum of the rest.
func GenerateAPIKey() (string, error) {
	b := make([]byte, 0, generatedLen)
	b = append(b, APIKeyPrefix...)
	// Rejection sampling keeps every base62 digit uniform: bytes 248..255
	// would favour the first digits, so they are drawn again.
	var buf [64]byte
	for len(b) < len(APIKeyPrefix)+keyRandomLen {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("mcpauth: generating an API key: %w", err)
		}
		for _, c := range buf {
			if c < 248 && len(b) < len(APIKeyPrefix)+keyRandomLen {
				b = append(b, base62[c%62])
			}
		}
	}
	sum := keyChecksum(string(b))
	return string(append(b, sum[:]...)), nil
}

// HashAPIKey returns the hex SHA-256 of key, the form [APIKey].Hash takes.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// APIKeyID returns a key's public identifier: the first 12 hex digits of its
// SHA-256. Audit events and [APIKeys.RevokeID] use it; it does not reveal the
// key.
func APIKeyID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return keyID(&sum)
}

func keyID(sum *[32]byte) string { return hex.EncodeToString(sum[:6]) }

// Authenticate implements [Authenticator].
func (k *APIKeys) Authenticate(r *http.Request) (*Principal, error) {
	if k == nil {
		return nil, failure(MethodAPIKey, ErrUnavailable, "", "not configured")
	}
	key, present, ok := header.Single(r.Header, apiKeyHeader)
	if present && !ok {
		return nil, failure(MethodAPIKey, ErrMalformed, "", "bad X-API-Key header")
	}
	if !present {
		token, _, ok, _, jwt := header.BearerJWT(r.Header)
		if !ok || jwt {
			return nil, ErrNoCredentials
		}
		key = token
	}
	if strings.HasPrefix(key, APIKeyPrefix) && !validChecksum(key) {
		return nil, failure(MethodAPIKey, ErrMalformed, "", "bad checksum")
	}
	// The key is only read; hashing it in place spares a copy per request.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
	e := (*k.table.Load())[sum]
	// The map probe compares hashes, not keys, so its timing says nothing
	// useful about the key; the constant-time comparison keeps it that way
	// should the table ever be keyed differently.
	if e == nil || subtle.ConstantTimeCompare(e.hash[:], sum[:]) != 1 {
		return nil, failure(MethodAPIKey, ErrInvalidCredentials, keyID(&sum), "unknown key")
	}
	if e.revoked.Load() {
		return nil, failure(MethodAPIKey, ErrRevoked, e.principal.KeyID, "")
	}
	if !e.expiresAt.IsZero() && !k.now().Before(e.expiresAt) {
		return nil, failure(MethodAPIKey, ErrExpired, e.principal.KeyID, "")
	}
	return e.principal, nil
}

// Add makes another key valid, for example the new key of a rotation. It
// copies the key table, so it costs time in proportion to the number of keys;
// configure many keys at once with [NewAPIKeys].
func (k *APIKeys) Add(key APIKey) error {
	e, err := newKeyEntry(key)
	if err != nil {
		return fmt.Errorf("mcpauth: API key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old := *k.table.Load()
	if _, dup := old[e.hash]; dup {
		return errors.New("mcpauth: API key: the key is configured already")
	}
	table := make(map[[32]byte]*keyEntry, len(old)+1)
	for h, v := range old {
		table[h] = v
	}
	table[e.hash] = e
	k.table.Store(&table)
	return nil
}

// Revoke stops a key from working, at once. It reports whether the key was
// configured.
func (k *APIKeys) Revoke(key string) bool {
	e := (*k.table.Load())[sha256.Sum256([]byte(key))]
	if e == nil {
		return false
	}
	e.revoked.Store(true)
	return true
}

// RevokeID revokes every key whose [APIKeyID] is id, for an operator who
// knows a key from the audit log but not its secret. It returns how many keys
// it revoked.
func (k *APIKeys) RevokeID(id string) int {
	n := 0
	for _, e := range *k.table.Load() {
		if e.principal.KeyID == id && !e.revoked.Swap(true) {
			n++
		}
	}
	return n
}

// Roles returns the roles that the configured keys carry, sorted and each
// once, revoked and expired keys included. Check them against the policy at
// start-up, in one call, so that a misspelt role fails loudly instead of
// silently granting nothing:
//
//	if err := guard.CheckRoles(keys.Roles()...); err != nil {
//		log.Fatal(err)
//	}
func (k *APIKeys) Roles() []string {
	var roles []string
	for _, e := range *k.table.Load() {
		for _, r := range e.principal.Roles {
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	slices.Sort(roles)
	return roles
}

func newKeyEntry(key APIKey) (*keyEntry, error) {
	e := &keyEntry{expiresAt: key.ExpiresAt}
	switch {
	case key.Key != "" && key.Hash != "":
		return nil, errors.New("set Key or Hash, not both")
	case key.Key != "":
		if err := checkKeyText(key.Key); err != nil {
			return nil, err
		}
		e.hash = sha256.Sum256([]byte(key.Key))
	case key.Hash != "":
		b, err := hex.DecodeString(key.Hash)
		if err != nil || len(b) != sha256.Size {
			return nil, errors.New("Hash is not a hex SHA-256")
		}
		copy(e.hash[:], b)
	default:
		return nil, errors.New("no Key or Hash")
	}
	id := keyID(&e.hash)
	subject := key.Subject
	if subject == "" {
		subject = "apikey-" + id
	}
	e.principal = (&Principal{
		Subject: subject,
		Method:  MethodAPIKey,
		Roles:   key.Roles,
		Scopes:  key.Scopes,
		Expiry:  key.ExpiresAt,
		KeyID:   id,
	}).seal()
	return e, nil
}

// checkKeyText validates a configured key's text. Its errors never quote the
// key.
func checkKeyText(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case !header.Token(key):
		return errors.New("the key has characters other than printable ASCII, or is too long")
	case len(key) < MinAPIKeyLen:
		return fmt.Errorf("the key is shorter than %d characters", MinAPIKeyLen)
	case strings.HasPrefix(key, APIKeyPrefix) && !validChecksum(key):
		return errors.New("the key has the " + APIKeyPrefix + " prefix but a wrong checksum")
	}
	return nil
}

// castagnoli is the CRC-32C table; with it crc32.Checksum uses the
// processor's CRC instruction where there is one.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keyChecksum returns the base62 CRC-32C of a generated key's prefix and
// random part.
func keyChecksum(body string) [keyChecksumLen]byte {
	n := crc32.Checksum(unsafe.Slice(unsafe.StringData(body), len(body)), castagnoli)
	var out [keyChecksumLen]byte
	for i := keyChecksumLen - 1; i >= 0; i-- {
		out[i] = base62[n%62]
		n /= 62
	}
	return out
}

func validChecksum(key string) bool {
	if len(key) != generatedLen {
		return false
	}
	for i := len(APIKeyPrefix); i < len(key); i++ {
		if !isBase62[key[i]] {
			return false
		}
	}
	want := keyChecksum(key[:generatedLen-keyChecksumLen])
	return subtle.ConstantTimeCompare(want[:], []byte(key[generatedLen-keyChecksumLen:])) == 1
}
