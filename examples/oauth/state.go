// This file says where the server keeps its state: a bbolt file (the
// default) or a Redis that several replicas share, and the secret that
// seals the signing keys in it. Copy it with main.go and serve.go.

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/store/bolt"
	"github.com/mcpauth/mcpauth/store/redis"
)

// envSecret is the environment variable with the server's secret.
const envSecret = "MCPAUTH_SECRET"

// minSecret is the least number of bytes a secret holds.
const minSecret = 32

// stateFlags say where the state is kept.
type stateFlags struct {
	data, redis string
	dataSet     bool // -data was given
}

func (f *stateFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", "mcpauth.db", "keep the state in this bbolt `file` (created if missing; its secret beside it in FILE.secret)")
	fs.StringVar(&f.redis, "redis", "", "keep the state in the Redis at this `URL` (redis://[:password@]host:port/db), shared by every replica; needs "+envSecret)
}

// parsed records which flags the command line set; call it after Parse.
func (f *stateFlags) parsed(fs *flag.FlagSet) error {
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "data" {
			f.dataSet = true
		}
	})
	if f.dataSet && f.redis != "" {
		return errors.New("mcpauth: set -data or -redis, not both")
	}
	if f.redis == "" && f.data == "" {
		return errors.New("mcpauth: -data is empty")
	}
	return nil
}

// state is the opened store and the secret that goes with it.
type state struct {
	store  mcpauth.Store
	closer io.Closer
	secret []byte
	// where says where the state is, for the log: the file, or Redis's
	// address without its password.
	where string
	// newSecret is the file a secret was just created in, or "".
	newSecret string
}

// Close closes the store.
func (s *state) Close() error { return s.closer.Close() }

// openState opens the store the flags name and loads (or, for a bbolt
// file, creates) the secret. With Redis the secret must come from
// MCPAUTH_SECRET, the same on every replica: a secret kept in Redis beside
// the sealed signing keys would open them for anyone with a dump.
func openState(ctx context.Context, f *stateFlags, getenv func(string) string) (*state, error) {
	st := &state{}
	env := strings.TrimSpace(getenv(envSecret))
	if env != "" {
		secret, err := decodeSecret(env)
		if err != nil {
			return nil, fmt.Errorf("mcpauth: %s: %w", envSecret, err)
		}
		st.secret = secret
	}
	if f.redis != "" {
		if st.secret == nil {
			return nil, fmt.Errorf("mcpauth: -redis needs %s, the same on every replica: export %s=$(openssl rand -base64 32)", envSecret, envSecret)
		}
		rs, err := redis.Open(f.redis, nil)
		if err != nil {
			return nil, err
		}
		// Fail at start-up on a wrong address rather than on the first
		// request; Ping is bounded by the store's timeout.
		if err := rs.Ping(ctx); err != nil {
			rs.Close()
			return nil, fmt.Errorf("mcpauth: -redis: Redis does not answer: %w", err)
		}
		st.store, st.closer, st.where = rs, rs, "Redis at "+redactURL(f.redis)
		return st, nil
	}
	if st.secret == nil {
		secret, created, err := fileSecret(f.data + ".secret")
		if err != nil {
			return nil, err
		}
		st.secret = secret
		if created {
			st.newSecret = f.data + ".secret"
		}
	}
	bs, err := bolt.Open(f.data, nil)
	if err != nil {
		return nil, err
	}
	st.store, st.closer, st.where = bs, bs, f.data
	return st, nil
}

// decodeSecret reads a secret in base64 (standard or URL alphabet, padded
// or not). The error never shows the value.
func decodeSecret(v string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil {
			if len(b) < minSecret {
				return nil, fmt.Errorf("want at least %d random bytes, base64: openssl rand -base64 32", minSecret)
			}
			return b, nil
		}
	}
	return nil, errors.New("not base64: openssl rand -base64 32 makes one")
}

// fileSecret reads the secret in path, creating it (mode 0600, a random
// one) when there is no such file. It reports whether it created it.
func fileSecret(path string) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		secret, err := decodeSecret(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, false, fmt.Errorf("mcpauth: %s: %w", path, err)
		}
		return secret, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("mcpauth: reading the secret: %w", err)
	}
	secret := make([]byte, minSecret)
	if _, err := rand.Read(secret); err != nil {
		return nil, false, err
	}
	// O_EXCL: of two servers started at once on one file, one writes the
	// secret and the other fails here (it would fail on the file's lock
	// anyway) instead of writing a different one.
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("mcpauth: creating the secret: %w", err)
	}
	_, err = fh.WriteString(base64.StdEncoding.EncodeToString(secret) + "\n")
	if err2 := fh.Close(); err == nil {
		err = err2
	}
	if err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("mcpauth: writing the secret: %w", err)
	}
	return secret, true, nil
}

// redactURL is a Redis URL for the log: without its password, or only
// its host when it does not parse.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}
