package mcpauth

import (
	"context"
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
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/mcpauth/mcpauth/internal/header"
)

// APIKeyPrefix starts every key made by [GenerateAPIKey]. It lets secret
// scanners recognise a leaked key, and lets [APIKeys] reject a key whose
// checksum is wrong (a typo, a truncated paste) before looking it up. A
// generated key is 54 bytes, short enough for SHA-256 to hash in one block.
const APIKeyPrefix = "mcpk_"

const (
	keyRandomLen   = 43 // base62 characters: 43 × log2(62) ≈ 256.03 bits
	keyChecksumLen = 6  // base62 characters of a CRC-32C: 62^6 > 2^32
	generatedLen   = len(APIKeyPrefix) + keyRandomLen + keyChecksumLen

	// minAPIKeyLen is the shortest key NewAPIKeys accepts. A short key can
	// be guessed; generate keys with [GenerateAPIKey].
	minAPIKeyLen = 16
)

// Bounds on what one key carries. Its subject and roles go into every audit
// event and to every tool that reads the principal, so they are kept short.
const (
	maxSubjectLen = 256
	maxRoleLen    = 128
	maxScopeLen   = 128
	maxKeyLabels  = 64 // roles, and scopes, of one key
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

// An APIKey configures one key of [APIKeys]. [NewAPIKeys] and [APIKeys.Add]
// check it and copy what they keep, so the caller may reuse or change its
// slices afterwards.
type APIKey struct {
	// Key is the secret: at least 16 bytes of printable ASCII
	// without spaces, not beginning or ending with a quote (' " `). It is
	// hashed at once; APIKeys never keeps it.
	Key string
	// Hash is the key's hex SHA-256 (see [HashAPIKey]), for configuring a key
	// without holding its secret. Set exactly one of Key and Hash.
	Hash string
	// Subject is the principal's subject. Empty means "apikey-" followed by
	// the key's ID. It is written into every audit event, so it is refused if
	// it is longer than 256 bytes, is not UTF-8, or holds white space, a
	// control or invisible formatting character, ';', ',' or a quote
	// (' " `): these are the marks of a misparsed list, whose subject would
	// carry the next key's text.
	Subject string
	// Roles follow the rules of Subject, at most 64 roles of at most 128
	// bytes each. Scopes are RFC 6749 §3.3 scope-tokens (printable ASCII but
	// space, '"' and '\'), at most 64 of at most 128 bytes each.
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
// Keys can also be kept in a [Store], shared by replicas and managed while
// the server runs: see [APIKeys.UseStore].
//
// A bearer value shaped like a JWT is left to a JWT authenticator. APIKeys is
// safe for concurrent use.
type APIKeys struct {
	table keyTable
	now   func() time.Time
	store atomic.Pointer[keyStore] // nil: no keys managed at run time
}

type keyEntry struct {
	hash      [32]byte
	principal *Principal
	expiresAt time.Time
	revoked   atomic.Bool
}

// NewAPIKeys returns an authenticator for the keys. It returns an error for a
// key shorter than 16, one with characters other than printable
// ASCII, a generated key whose checksum is wrong, or a key given twice. The
// error names the key by position, never by its text.
func NewAPIKeys(keys ...APIKey) (*APIKeys, error) {
	k := &APIKeys{now: time.Now}
	k.table.init(len(keys))
	for i, key := range keys {
		e, err := newKeyEntry(key)
		if err != nil {
			return nil, fmt.Errorf("mcpauth: API key %d: %w", i+1, err)
		}
		if !k.table.add(e) {
			return nil, fmt.Errorf("mcpauth: API key %d: the same key is configured twice", i+1)
		}
	}
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
// KEY:SUBJECT or KEY:SUBJECT:ROLE|ROLE: ',' separates entries, ':' separates
// the fields of an entry and '|' separates roles. White space around entries,
// fields and roles (trailing newlines included) is trimmed and empty entries
// are ignored. Quotes are not stripped: a value copied from a .env file with
// its quotes is refused, not taken with them.
//
// The key, subject and roles follow the rules of [APIKey], and the list
// syntax adds its own: a key, subject or role cannot hold ':' or ',', a
// subject cannot hold '|', and an entry cannot hold ';' or a line break.
// Entries separated by ';', by spaces or by lines would otherwise make the
// next key part of a subject, and so of every audit event and of what tools
// see. A malformed entry is an error that names its position, the mistake and
// how to write it, never any of its text.
func ParseAPIKeys(s string) ([]APIKey, error) {
	var keys []APIKey
	prevRoles := 0 // entry number of the previous entry, if it had roles
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		n := i + 1
		fail := func(format string, args ...any) error {
			return fmt.Errorf("mcpauth: %s entry %d"+format, append([]any{EnvAPIKeys, n}, args...)...)
		}
		// Checked on the whole entry first: these mistakes also change how
		// many fields it seems to have.
		if strings.ContainsAny(entry, "\n\r") {
			return nil, fail(" holds a line break: entries are separated by ',', not by lines")
		}
		if strings.ContainsRune(entry, ';') {
			return nil, fail(" contains ';': entries are separated by ',', and no part of an entry can contain ';'")
		}
		fields := strings.Split(entry, ":")
		if len(fields) > 3 {
			return nil, fail(" has %d fields, want KEY, KEY:SUBJECT or KEY:SUBJECT:ROLE|ROLE: ':' separates fields, so a key, subject or role cannot contain ':'; separate roles with '|'", len(fields))
		}
		for j := range fields {
			fields[j] = strings.TrimSpace(fields[j])
		}
		key := APIKey{Key: fields[0]}
		if err := checkKeyText(key.Key); err != nil {
			switch {
			case len(fields) == 1 && prevRoles > 0 && errors.Is(err, errKeyShort):
				return nil, fail(" looks like a role of entry %d (a short word with no ':'): separate roles with '|', not ','", prevRoles)
			case len(fields) > 1 && (errors.Is(err, errKeyShort) || errors.Is(err, errKeyChecksum)):
				return nil, fail(": %v; ':' separates the key from the subject, so a key cannot contain ':'", err)
			case errors.Is(err, errKeySpace):
				return nil, fail(": %v: entries are separated by ','", err)
			}
			return nil, fail(": %w", err)
		}
		if len(fields) > 1 {
			if msg := checkLabel("the subject", fields[1], maxSubjectLen, true); msg != "" {
				return nil, fail(": %s", msg)
			}
			key.Subject = fields[1]
		}
		prevRoles = 0
		if len(fields) > 2 {
			roles := strings.Split(fields[2], "|")
			if len(roles) > maxKeyLabels {
				return nil, fail(" has more than %d roles", maxKeyLabels)
			}
			for j, role := range roles {
				role = strings.TrimSpace(role)
				if msg := checkLabel(fmt.Sprintf("role %d", j+1), role, maxRoleLen, true); msg != "" {
					return nil, fail(": %s", msg)
				}
				key.Roles = append(key.Roles, role)
			}
			prevRoles = n
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

// apiKeyID returns a key's public identifier: the first 12 hex digits of its
// SHA-256. Audit events and [APIKeys.RevokeID] use it; it does not reveal the
// key.
func apiKeyID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return keyID(&sum)
}

func keyID(sum *[32]byte) string { return hex.EncodeToString(sum[:6]) }

// Authenticate implements [Authenticator].
func (k *APIKeys) Authenticate(r *http.Request) (*Principal, error) {
	if k == nil {
		return nil, failure(MethodAPIKey, ErrUnavailable, "", "not configured")
	}
	key, present, ok := header.Single(r.Header, header.APIKey)
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
	return k.check(r.Context(), &sum)
}

// check returns the principal of the key whose SHA-256 is sum, or the
// refusal: unknown, revoked, expired, or its store unavailable. Keys
// configured in code are looked up first, then the store's. It is what
// Authenticate decides, and can be asked again for a credential already
// accepted (a stream it opened) to learn whether it still holds.
func (k *APIKeys) check(ctx context.Context, sum *[32]byte) (*Principal, error) {
	e, now := k.table.get(sum), k.now
	if e == nil {
		if ks := k.store.Load(); ks != nil {
			var err error
			if e, err = ks.lookup(ctx, sum); err != nil {
				return nil, err
			}
			now = ks.now
		}
	}
	// The map probe compares hashes, not keys, so its timing says nothing
	// useful about the key; the constant-time comparison keeps it that way
	// should the table ever be keyed differently.
	if e == nil || subtle.ConstantTimeCompare(e.hash[:], sum[:]) != 1 {
		return nil, failure(MethodAPIKey, ErrInvalidCredentials, keyID(sum), "unknown key")
	}
	if e.revoked.Load() {
		return nil, failure(MethodAPIKey, ErrRevoked, e.principal.KeyID, "")
	}
	if !e.expiresAt.IsZero() && !now().Before(e.expiresAt) {
		return nil, failure(MethodAPIKey, ErrExpired, e.principal.KeyID, "")
	}
	return e.principal, nil
}

// Add makes another key valid, for example the new key of a rotation. It
// takes effect on the next request and costs the same however many keys
// there are: it locks one of 32 shards of the table and copies nothing.
func (k *APIKeys) Add(key APIKey) error {
	e, err := newKeyEntry(key)
	if err != nil {
		return fmt.Errorf("mcpauth: API key: %w", err)
	}
	if !k.table.add(e) {
		return errors.New("mcpauth: API key: the key is configured already")
	}
	k.reportKey(e, reasonAPIKeysCreated)
	return nil
}

// reportKey reports a key added or revoked at run time (EventKeyManagement),
// to the sink of UseStore's options if it was called, else to
// slog.Default.
func (k *APIKeys) reportKey(e *keyEntry, detail string) {
	sink := LogEvents(nil)
	if ks := k.store.Load(); ks != nil {
		sink = ks.events
	}
	emit(context.Background(), sink, Event{Kind: EventKeyManagement, Outcome: OutcomeSuccess, Method: MethodAPIKey,
		Subject: e.principal.Subject, KeyID: e.principal.KeyID, Detail: detail})
}

// Revoke stops a key configured in code from working, at once. It reports
// whether the key was configured. Stored keys are removed with
// [APIKeys.Delete].
func (k *APIKeys) Revoke(key string) bool {
	sum := sha256.Sum256([]byte(key))
	e := k.table.get(&sum)
	if e == nil {
		return false
	}
	if !e.revoked.Swap(true) {
		k.reportKey(e, reasonAPIKeysRevoked)
	}
	notifyRevoked()
	return true
}

// RevokeID revokes every key whose API-key ID is id, for an operator who
// knows a key from the audit log but not its secret. It returns how many keys
// it revoked.
func (k *APIKeys) RevokeID(id string) int {
	n := 0
	k.table.each(func(e *keyEntry) {
		if e.principal.KeyID == id && !e.revoked.Swap(true) {
			n++
			k.reportKey(e, reasonAPIKeysRevoked)
		}
	})
	if n > 0 {
		notifyRevoked()
	}
	return n
}

// Roles returns the roles that the configured keys carry, sorted and each
// once, revoked and expired keys included (keys in a store are not: check
// their roles before [APIKeys.Create]). Check them against the policy at
// start-up, in one call, so that a misspelt role fails loudly instead of
// silently granting nothing:
//
//	if err := guard.CheckRoles(keys.Roles()...); err != nil {
//		log.Fatal(err)
//	}
func (k *APIKeys) Roles() []string {
	var roles []string
	k.table.each(func(e *keyEntry) {
		for _, r := range e.principal.Roles {
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	})
	slices.Sort(roles)
	return roles
}

// keyTable holds the keys configured in code, by SHA-256, split into
// shards each under its own lock: an Add locks one shard and copies nothing
// (a table copied on every write made one Add at a million keys cost 0.2 s
// and 100 MB of garbage), and a lookup takes one shard's read lock. The
// hashes are uniform, so their first byte picks the shard.
type keyTable struct {
	shards [keyShards]keyShard
}

const keyShards = 32

type keyShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*keyEntry
	// Two shards' locks in one cache line would make readers on different
	// cores contend for it.
	_ [64 - 32]byte
}

// init sizes the shards for n keys. It is called before the table is shared.
func (t *keyTable) init(n int) {
	for i := range t.shards {
		t.shards[i].m = make(map[[32]byte]*keyEntry, n/keyShards)
	}
}

func (t *keyTable) shard(sum *[32]byte) *keyShard { return &t.shards[sum[0]%keyShards] }

func (t *keyTable) get(sum *[32]byte) *keyEntry {
	s := t.shard(sum)
	s.mu.RLock()
	e := s.m[*sum]
	s.mu.RUnlock()
	return e
}

// add adds e, or reports false if its key is in the table already.
func (t *keyTable) add(e *keyEntry) bool {
	s := t.shard(&e.hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.m[e.hash]; dup {
		return false
	}
	if s.m == nil {
		s.m = make(map[[32]byte]*keyEntry)
	}
	s.m[e.hash] = e
	return true
}

// each calls fn for every entry, one shard at a time under its read lock.
func (t *keyTable) each(fn func(e *keyEntry)) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, e := range s.m {
			fn(e)
		}
		s.mu.RUnlock()
	}
}

func (t *keyTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
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
	if key.Subject != "" {
		if msg := checkLabel("the subject", key.Subject, maxSubjectLen, false); msg != "" {
			return nil, errors.New(msg)
		}
	}
	if len(key.Roles) > maxKeyLabels {
		return nil, fmt.Errorf("more than %d roles", maxKeyLabels)
	}
	for i, role := range key.Roles {
		if msg := checkLabel(fmt.Sprintf("role %d", i+1), role, maxRoleLen, false); msg != "" {
			return nil, errors.New(msg)
		}
	}
	if len(key.Scopes) > maxKeyLabels {
		return nil, fmt.Errorf("more than %d scopes", maxKeyLabels)
	}
	for i, scope := range key.Scopes {
		if err := checkScope(scope); err != nil {
			return nil, fmt.Errorf("scope %d %w", i+1, err)
		}
	}
	id := keyID(&e.hash)
	subject := key.Subject
	if subject == "" {
		subject = "apikey-" + id
	}
	e.principal = (&Principal{
		Subject: subject,
		Method:  MethodAPIKey,
		// The principal is shared by every request of the key: it must not
		// alias the caller's slices, and with no spare capacity an append by
		// a handler gets a new array instead of writing into the one the
		// next request reads.
		Roles:  slices.Clip(slices.Clone(key.Roles)),
		Scopes: slices.Clip(slices.Clone(key.Scopes)),
		Expiry: key.ExpiresAt,
		KeyID:  id,
		state:  e,
	}).seal()
	return e, nil
}

// revoked implements credentialState: an open request of a key ends when
// the key is revoked.
func (e *keyEntry) isRevoked(context.Context) (bool, error) { return e.revoked.Load(), nil }

// shared implements credentialState: keys are revoked in this process
// only, which wakes the watchers.
func (e *keyEntry) shared() bool { return false }

// The errors of checkKeyText that ParseAPIKeys adds a hint to.
var (
	errKeyShort    = fmt.Errorf("the key is shorter than %d characters", minAPIKeyLen)
	errKeyChecksum = errors.New("the key has the prefix of a generated key but a wrong checksum")
	errKeySpace    = errors.New("the key contains white space")
)

// checkKeyText validates a configured key's text. Its errors never quote the
// key, nor even the prefix of a generated key.
func checkKeyText(key string) error {
	if key == "" {
		return errors.New("the key is empty")
	}
	if len(key) > header.MaxCredentialLen {
		return fmt.Errorf("the key is longer than %d bytes", header.MaxCredentialLen)
	}
	if isQuote(key[0]) || isQuote(key[len(key)-1]) {
		return errors.New("the key begins or ends with a quote: quotes are not stripped and would be part of the key; remove them")
	}
	if !header.Token(key) {
		switch {
		case strings.ContainsAny(key, " \t\n\v\f\r"):
			return errKeySpace
		case strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			return errors.New("the key contains a control character")
		}
		return errors.New("the key has characters other than printable ASCII")
	}
	if len(key) < minAPIKeyLen {
		return errKeyShort
	}
	if strings.HasPrefix(key, APIKeyPrefix) && !validChecksum(key) {
		return errKeyChecksum
	}
	return nil
}

func isQuote(c byte) bool { return c == '\'' || c == '"' || c == '`' }

// checkLabel validates a subject or role, named by what ("the subject",
// "role 2"), and returns what is wrong with it, or "". The characters it
// refuses are those a misparsed or mis-separated list leaves behind, and those
// that would forge or hide text in an audit line. inList adds the hint for
// MCP_API_KEYS. The message never quotes the value.
func checkLabel(what, s string, max int, inList bool) string {
	switch {
	case s == "":
		if inList && what == "the subject" {
			return "the subject is empty: write KEY, KEY:SUBJECT or KEY:SUBJECT:ROLE|ROLE"
		}
		return what + " is empty"
	case len(s) > max:
		return fmt.Sprintf("%s is longer than %d bytes", what, max)
	case !utf8.ValidString(s):
		return what + " is not valid UTF-8"
	}
	for _, r := range s {
		switch {
		case r == ';':
			return what + " contains ';'"
		case r == ',':
			return what + " contains ','"
		case r == '|' && inList && what == "the subject":
			// KEY:admin|editor: roles written where the subject goes.
			return "the subject contains '|', which separates roles: write KEY:SUBJECT:ROLE|ROLE"
		case r == '\'' || r == '"' || r == '`':
			return what + " contains a quote: quotes are not stripped and would be part of the value; remove them"
		case unicode.IsSpace(r):
			if inList {
				return what + " contains white space: entries are separated by ',', roles by '|'"
			}
			return what + " contains white space"
		case unicode.IsControl(r):
			return what + " contains a control character"
		case unicode.Is(unicode.Cf, r):
			return what + " contains an invisible formatting character (such as a bidi override or a zero-width space)"
		}
	}
	return ""
}

// checkScope validates a scope given to a key; its errors follow "scope N".
// A scope is an RFC 6749 §3.3 scope-token, as a token's scope claim holds,
// so that it can be written into a WWW-Authenticate challenge as it is.
func checkScope(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > maxScopeLen:
		return fmt.Errorf("is longer than %d bytes", maxScopeLen)
	}
	for i := 0; i < len(s); i++ {
		// scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return errors.New("is not an RFC 6749 scope-token: printable ASCII but space, '\"' and '\\'")
		}
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
