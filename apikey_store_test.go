package mcpauth_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/testredis"
	"github.com/mcpauth/mcpauth/store/bolt"
	"github.com/mcpauth/mcpauth/store/redis"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// faultyStore wraps a Store: it counts Gets, and while failing is set it
// answers every call with an error, or while blocking is set waits for the
// call's context to end.
type faultyStore struct {
	mcpauth.Store
	gets     atomic.Int64
	failing  atomic.Bool
	blocking atomic.Bool
	gate     chan struct{} // when set, Get waits for it to close
	entered  chan struct{} // when set, Get sends on it before waiting
}

var errStoreDown = errors.New("store down (test)")

func (s *faultyStore) fault(ctx context.Context) error {
	if s.blocking.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if s.failing.Load() {
		return errStoreDown
	}
	return nil
}

func (s *faultyStore) Get(ctx context.Context, key string) ([]byte, error) {
	s.gets.Add(1)
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.gate != nil {
		<-s.gate
	}
	if err := s.fault(ctx); err != nil {
		return nil, err
	}
	return s.Store.Get(ctx, key)
}

func (s *faultyStore) Create(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.fault(ctx); err != nil {
		return err
	}
	return s.Store.Create(ctx, key, value, ttl)
}

func (s *faultyStore) Delete(ctx context.Context, key string) error {
	if err := s.fault(ctx); err != nil {
		return err
	}
	return s.Store.Delete(ctx, key)
}

func (s *faultyStore) List(ctx context.Context, prefix string, fn func(string, []byte) error) error {
	if err := s.fault(ctx); err != nil {
		return err
	}
	return s.Store.List(ctx, prefix, fn)
}

// findEvents returns the events of l of a kind, and with a detail if it is
// not empty.
func findEvents(l *eventLog, kind mcpauth.EventKind, detail string) []mcpauth.Event {
	var out []mcpauth.Event
	for _, e := range l.all() {
		if e.Kind == kind && (detail == "" || e.Detail == detail) {
			out = append(out, e)
		}
	}
	return out
}

// storedKeys returns an APIKeys with no configured keys on st.
func storedKeys(t testing.TB, st mcpauth.Store, opts *mcpauth.APIKeyStoreOptions) *mcpauth.APIKeys {
	t.Helper()
	k, err := mcpauth.NewAPIKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.UseStore(st, opts); err != nil {
		t.Fatal(err)
	}
	return k
}

// status sends one request with key through Require and returns the
// response, and the subject the protected handler saw ("" if none).
func status(t testing.TB, h http.Handler, key string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("X-API-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w, w.Header().Get("X-Subject")
}

// protect wraps a handler that echoes the principal's subject.
func protect(k *mcpauth.APIKeys) http.Handler {
	return mcpauth.Require(quiet, k)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := mcpauth.PrincipalFromHTTPRequest(r); p != nil {
			w.Header().Set("X-Subject", p.Subject)
		}
	}))
}

// backends are the stores every stored-key test runs on: memory, bbolt,
// and a real redis-server (skipped with an install hint when it is
// missing, failed under MCPAUTH_INTEGRATION=require). Two calls of open
// for one test return two clients of one store, as two replicas would
// have (for bbolt, which one process opens at a time, the same Store).
var backends = []struct {
	name string
	open func(t *testing.T) (open func() mcpauth.Store, file string)
}{
	{"memory", func(t *testing.T) (func() mcpauth.Store, string) {
		st := mcpauth.NewMemoryStore()
		return func() mcpauth.Store { return st }, ""
	}},
	{"bolt", func(t *testing.T) (func() mcpauth.Store, string) {
		path := filepath.Join(t.TempDir(), "keys.db")
		st, err := bolt.Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return func() mcpauth.Store { return st }, path
	}},
	{"redis", func(t *testing.T) (func() mcpauth.Store, string) {
		srv := testredis.Start(t)
		return func() mcpauth.Store {
			st, err := redis.Open(srv.URL(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		}, ""
	}},
}

// TestStoredAPIKeys runs the life of a stored key on each backend, with two
// APIKeys on one store as two replicas: created on one, it works on both;
// listed with its hash and never its secret; deleted on one, it stops
// working there at once and on the other once CacheTTL has passed.
func TestStoredAPIKeys(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			open, file := b.open(t)
			clock := newFakeClock()
			events := &eventLog{}
			opts := &mcpauth.APIKeyStoreOptions{CacheTTL: 5 * time.Second, Clock: clock.now, Events: events}
			one, two := storedKeys(t, open(), opts), storedKeys(t, open(), opts)
			h1, h2 := protect(one), protect(two)
			ctx := context.Background()

			key, err := one.Create(ctx, mcpauth.APIKey{Subject: "alice", Roles: []string{"editor"}, Scopes: []string{"tools:read"},
				ExpiresAt: clock.now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(key, mcpauth.APIKeyPrefix) {
				t.Fatalf("Create returned %q, want a generated key", key)
			}
			for i, h := range []http.Handler{h1, h2} {
				if w, sub := status(t, h, key); w.Code != http.StatusOK || sub != "alice" {
					t.Fatalf("replica %d: created key: %d, subject %q; want 200 alice", i+1, w.Code, sub)
				}
			}
			if got := findEvents(events, mcpauth.EventKeyManagement, "created"); len(got) != 1 || got[0].KeyID != mcpauth.APIKeyID(key) || got[0].Subject != "alice" {
				t.Fatalf("created events: %+v", got)
			}

			list, err := two.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := mcpauth.APIKey{Hash: mcpauth.HashAPIKey(key), Subject: "alice", Roles: []string{"editor"}, Scopes: []string{"tools:read"}}
			if len(list) != 1 || list[0].Key != "" || list[0].Hash != want.Hash || list[0].Subject != want.Subject ||
				!slices.Equal(list[0].Roles, want.Roles) || !slices.Equal(list[0].Scopes, want.Scopes) || !list[0].ExpiresAt.Equal(clock.now().Add(time.Hour)) {
				t.Fatalf("List = %+v, want one key like %+v", list, want)
			}

			// The store holds the hash, never the key.
			raw, err := open().Get(ctx, "apikey:"+mcpauth.HashAPIKey(key))
			if err != nil {
				t.Fatalf("the key's record: %v", err)
			}
			if bytes.Contains(raw, []byte(key)) || bytes.Contains(raw, []byte(key[len(mcpauth.APIKeyPrefix):])) {
				t.Fatal("the record holds the secret")
			}

			n, err := one.Delete(ctx, mcpauth.APIKeyID(key))
			if err != nil || n != 1 {
				t.Fatalf("Delete = %d, %v; want 1", n, err)
			}
			if w, _ := status(t, h1, key); w.Code != http.StatusUnauthorized {
				t.Fatalf("deleted key on the replica that deleted it: %d, want 401", w.Code)
			}
			// The other replica answers from its cache until CacheTTL.
			clock.add(4 * time.Second)
			if w, _ := status(t, h2, key); w.Code != http.StatusOK {
				t.Fatalf("deleted key on the other replica within CacheTTL: %d, want 200 (cached)", w.Code)
			}
			clock.add(time.Second)
			if w, _ := status(t, h2, key); w.Code != http.StatusUnauthorized {
				t.Fatalf("deleted key on the other replica after CacheTTL: %d, want 401", w.Code)
			}
			if got := findEvents(events, mcpauth.EventKeyManagement, "deleted"); len(got) != 1 || got[0].KeyID != mcpauth.APIKeyID(key) {
				t.Fatalf("deleted events: %+v", got)
			}
			if list, err := one.List(ctx); err != nil || len(list) != 0 {
				t.Fatalf("List after Delete = %v, %v", list, err)
			}

			// A key presented before it is created (a client configured
			// first, its key registered by an operator after) is remembered as
			// unknown. Created through one replica, it works there at once, and
			// on the other once CacheTTL has passed.
			late, _ := mcpauth.GenerateAPIKey()
			for i, h := range []http.Handler{h1, h2} {
				if w, _ := status(t, h, late); w.Code != http.StatusUnauthorized {
					t.Fatalf("replica %d: key not created yet: %d, want 401", i+1, w.Code)
				}
			}
			if got, err := one.Create(ctx, mcpauth.APIKey{Key: late, Subject: "bob"}); err != nil || got != late {
				t.Fatalf("Create with a given key = %q, %v", got, err)
			}
			if w, sub := status(t, h1, late); w.Code != http.StatusOK || sub != "bob" {
				t.Fatalf("key created on this replica after a refusal: %d %q, want 200 bob", w.Code, sub)
			}
			if w, _ := status(t, h2, late); w.Code != http.StatusUnauthorized {
				t.Fatalf("key created on the other replica, within CacheTTL of a refusal: %d, want 401 (cached)", w.Code)
			}
			clock.add(5 * time.Second)
			if w, sub := status(t, h2, late); w.Code != http.StatusOK || sub != "bob" {
				t.Fatalf("key created on the other replica, after CacheTTL: %d %q, want 200 bob", w.Code, sub)
			}

			// By hash: the secret never reaches the server.
			byHash, _ := mcpauth.GenerateAPIKey()
			if got, err := two.Create(ctx, mcpauth.APIKey{Hash: mcpauth.HashAPIKey(byHash), Subject: "carol"}); err != nil || got != "" {
				t.Fatalf("Create by hash = %q, %v; want \"\", nil", got, err)
			}
			if w, sub := status(t, h1, byHash); w.Code != http.StatusOK || sub != "carol" {
				t.Fatalf("key created by hash: %d %q, want 200 carol", w.Code, sub)
			}
			if _, err := one.Create(ctx, mcpauth.APIKey{Key: byHash}); err == nil {
				t.Fatal("a key created twice was accepted")
			}

			if file != "" {
				assertNoSecret(t, file, key, late, byHash)
			}
		})
	}
}

// assertNoSecret checks that the store's file holds none of the keys.
func assertNoSecret(t *testing.T, path string, keys ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if bytes.Contains(b, []byte(k)) {
			t.Fatalf("%s holds a secret key", path)
		}
	}
}
