package authserver

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Users logs users in at the authorization endpoint. Implement it to use
// another user directory; [PasswordUsers] is the one this package ships.
type Users interface {
	// Authenticate returns the user whose credentials these are. It returns
	// an error wrapping [ErrInvalidLogin] for a wrong username or password
	// (the login form says so and lets the user try again), and any other
	// error when it could not tell (the user is asked to try later).
	// It should take as long for an unknown username as for a wrong
	// password, so that its timing does not reveal which usernames exist.
	Authenticate(ctx context.Context, username, password string) (*User, error)
}

// ErrInvalidLogin is a wrong username or password.
var ErrInvalidLogin = errors.New("mcpauth: authserver: invalid username or password")

// A User is a logged-in user: the subject of the tokens issued for it.
type User struct {
	// Subject is the tokens' sub. Required.
	Subject string
	// Roles are the tokens' roles, for the RBAC guard.
	Roles []string
	// Scopes are the scopes the user may grant. Nil means any the client
	// may have; a request for more is narrowed to these.
	Scopes []string
}

// DefaultPasswordIterations is the PBKDF2-HMAC-SHA-256 iteration count
// of [PasswordUsers] unless configured otherwise: OWASP's recommendation.
const DefaultPasswordIterations = 600_000

// Bounds of what a login form may carry.
const (
	maxUsernameLen = 256
	maxPasswordLen = 1024
)

// PasswordUsersOptions configures [NewPasswordUsers].
type PasswordUsersOptions struct {
	// Iterations is the PBKDF2 iteration count of new hashes. Zero (the
	// default) means DefaultPasswordIterations; lower it only in tests.
	Iterations int
	// MaxConcurrent bounds how many password checks run at once, so that a
	// flood of login attempts cannot take every CPU. Zero (the default)
	// means GOMAXPROCS.
	MaxConcurrent int
}

// PasswordUsers is a [Users] of usernames and passwords, hashed with
// PBKDF2-HMAC-SHA-256 and a random 16-byte salt per user. A username is
// matched exactly. It is safe for concurrent use.
type PasswordUsers struct {
	iterations int
	sem        chan struct{}
	dummy      passwordHash // what an unknown username is checked against

	mu    sync.RWMutex
	users map[string]*passwordUser
}

type passwordUser struct {
	hash passwordHash
	user User
}

type passwordHash struct {
	iterations int
	salt, sum  []byte
}

// NewPasswordUsers returns an empty set of users.
func NewPasswordUsers(opts *PasswordUsersOptions) (*PasswordUsers, error) {
	var o PasswordUsersOptions
	if opts != nil {
		o = *opts
	}
	if o.Iterations < 0 || o.MaxConcurrent < 0 {
		return nil, errors.New("mcpauth: authserver: negative PasswordUsersOptions")
	}
	if o.Iterations == 0 {
		o.Iterations = DefaultPasswordIterations
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = runtime.GOMAXPROCS(0)
	}
	p := &PasswordUsers{iterations: o.Iterations, sem: make(chan struct{}, o.MaxConcurrent), users: map[string]*passwordUser{}}
	dummy, err := newPasswordHash("not a password", o.Iterations)
	if err != nil {
		return nil, err
	}
	p.dummy = dummy
	return p, nil
}

// Add adds a user with a password, which is hashed at once.
func (p *PasswordUsers) Add(username, password string, u User) error {
	if password == "" || len(password) > maxPasswordLen {
		return fmt.Errorf("mcpauth: authserver: user %q: the password must be 1 to %d bytes", username, maxPasswordLen)
	}
	h, err := newPasswordHash(password, p.iterations)
	if err != nil {
		return err
	}
	return p.add(username, h, u)
}

// AddHash adds a user with a hash from [HashPassword], so that a
// configuration need not hold the password.
func (p *PasswordUsers) AddHash(username, hash string, u User) error {
	h, err := parsePasswordHash(hash)
	if err != nil {
		return fmt.Errorf("mcpauth: authserver: user %q: %w", username, err)
	}
	return p.add(username, h, u)
}

func (p *PasswordUsers) add(username string, h passwordHash, u User) error {
	if username == "" || len(username) > maxUsernameLen {
		return fmt.Errorf("mcpauth: authserver: the username must be 1 to %d bytes", maxUsernameLen)
	}
	if u.Subject == "" {
		return fmt.Errorf("mcpauth: authserver: user %q: empty Subject", username)
	}
	u.Roles, u.Scopes = slices.Clone(u.Roles), slices.Clone(u.Scopes)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users[username] != nil {
		return fmt.Errorf("mcpauth: authserver: user %q added twice", username)
	}
	p.users[username] = &passwordUser{hash: h, user: u}
	return nil
}

// Authenticate implements [Users]. An unknown username costs one PBKDF2
// computation, as a known one does.
func (p *PasswordUsers) Authenticate(ctx context.Context, username, password string) (*User, error) {
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.RLock()
	pu := p.users[username]
	p.mu.RUnlock()
	h := p.dummy
	if pu != nil {
		h = pu.hash
	}
	if len(password) > maxPasswordLen {
		password = password[:maxPasswordLen] // still costs a hash; never matches a stored one
		pu = nil
	}
	ok := h.check(password)
	if pu == nil || !ok {
		return nil, ErrInvalidLogin
	}
	u := pu.user
	u.Roles, u.Scopes = slices.Clone(u.Roles), slices.Clone(u.Scopes)
	return &u, nil
}

func newPasswordHash(password string, iterations int) (passwordHash, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return passwordHash{}, fmt.Errorf("mcpauth: authserver: %w", err)
	}
	sum, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return passwordHash{}, fmt.Errorf("mcpauth: authserver: %w", err)
	}
	return passwordHash{iterations: iterations, salt: salt, sum: sum}, nil
}

func (h passwordHash) check(password string) bool {
	sum, err := pbkdf2.Key(sha256.New, password, h.salt, h.iterations, len(h.sum))
	return err == nil && subtle.ConstantTimeCompare(sum, h.sum) == 1
}

const hashScheme = "pbkdf2-sha256"

// HashPassword returns the hash of a password for [PasswordUsers.AddHash]:
// "pbkdf2-sha256$<iterations>$<salt>$<hash>", salt and hash in base64url.
// Zero iterations means DefaultPasswordIterations.
func HashPassword(password string, iterations int) (string, error) {
	if iterations == 0 {
		iterations = DefaultPasswordIterations
	}
	if iterations < 0 || password == "" || len(password) > maxPasswordLen {
		return "", errors.New("mcpauth: authserver: bad password or iteration count")
	}
	h, err := newPasswordHash(password, iterations)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return hashScheme + "$" + strconv.Itoa(iterations) + "$" + enc.EncodeToString(h.salt) + "$" + enc.EncodeToString(h.sum), nil
}

func parsePasswordHash(s string) (passwordHash, error) {
	parts := strings.Split(s, "$")
	bad := errors.New("not a pbkdf2-sha256 hash from HashPassword")
	if len(parts) != 4 || parts[0] != hashScheme {
		return passwordHash{}, bad
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < 1 {
		return passwordHash{}, bad
	}
	salt, err1 := base64.RawURLEncoding.DecodeString(parts[2])
	sum, err2 := base64.RawURLEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(salt) < 16 || len(sum) != sha256.Size {
		return passwordHash{}, bad
	}
	return passwordHash{iterations: n, salt: salt, sum: sum}, nil
}
