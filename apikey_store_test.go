package mcpauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/mcpauth/mcpauth/internal/testredis"
	"github.com/mcpauth/mcpauth/store/bolt"
	"github.com/mcpauth/mcpauth/store/redis"
)

// fakeClock is a clock a test moves by hand. It starts at the real time,
// so that an expiry set on it is in the future for Require too, which ends
// open requests at their credential's expiry on the real clock.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
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
		select {
		case s.entered <- struct{}{}:
		default:
		}
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

// noLockout is Require's options for tests of the keys themselves, which
// present many bad keys from one address: the lockout (tested on its own)
// would answer them with 429.
func noLockout() *mcpauth.RequireOptions {
	lo, err := mcpauth.NewLockout(&mcpauth.LockoutOptions{SourceFailures: -1, CredentialFailures: -1})
	if err != nil {
		panic(err)
	}
	return &mcpauth.RequireOptions{Logger: slog.New(slog.DiscardHandler), Lockout: lo}
}

// protect wraps a handler that echoes the principal's subject.
func protect(k *mcpauth.APIKeys) http.Handler {
	return mcpauth.Require(noLockout(), k)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
			if got := findEvents(events, mcpauth.EventKeyManagement, "deleted"); len(got) != 1 || got[0].KeyID != mcpauth.APIKeyID(key) || got[0].Subject != "alice" {
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

			// Neither the store's content nor its file holds a key it served.
			var dump []byte
			if err := open().List(ctx, "", func(k string, v []byte) error {
				dump = append(append(append(dump, k...), '\n'), v...)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{key, late, byHash} {
				if bytes.Contains(dump, []byte(secret)) || bytes.Contains(dump, []byte(secret[len(mcpauth.APIKeyPrefix):])) {
					t.Fatal("the store holds a secret key")
				}
			}
			if !bytes.Contains(dump, []byte(mcpauth.HashAPIKey(late))) {
				t.Fatal("the store's content does not hold the hash of a stored key: the search above looked at nothing")
			}
			if file != "" {
				assertNoSecret(t, file, mcpauth.HashAPIKey(late), key, late, byHash)
			}
		})
	}
}

// assertNoSecret checks that the store's file holds none of the keys, and
// does hold want (a stored hash), so that the search is known to look at
// the data.
func assertNoSecret(t *testing.T, path, want string, keys ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(want)) {
		t.Fatalf("%s does not hold a stored key's hash", path)
	}
	for _, k := range keys {
		if bytes.Contains(b, []byte(k)) {
			t.Fatalf("%s holds a secret key", path)
		}
	}
}

// TestStoredAPIKeyExpiresInStore checks, on each backend and on the real
// clock, that the store itself forgets a key when it expires: the record
// gets the key's expiry as its ttl.
func TestStoredAPIKeyExpiresInStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			open, _ := b.open(t)
			st := open()
			k := storedKeys(t, st, nil)
			ctx := context.Background()
			key, err := k.Create(ctx, mcpauth.APIKey{ExpiresAt: time.Now().Add(200 * time.Millisecond)})
			if err != nil {
				t.Fatal(err)
			}
			name := "apikey:" + mcpauth.HashAPIKey(key)
			// Wait for the store to drop it, with a generous upper bound.
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, err := st.Get(ctx, name)
				if errors.Is(err, mcpauth.ErrNotFound) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if time.Now().After(deadline) {
					t.Fatal("the store still holds the key 10 s after it expired")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if w, _ := status(t, protect(k), key); w.Code != http.StatusUnauthorized {
				t.Fatalf("expired key: %d, want 401", w.Code)
			}
		})
	}
}

// TestStoredAPIKeyExpiry checks expiry on the injected clock: a cached key
// stops working at its ExpiresAt, not at the end of its cache entry.
func TestStoredAPIKeyExpiry(t *testing.T) {
	clock := newFakeClock()
	events := &eventLog{}
	k := storedKeys(t, mcpauth.NewMemoryStore(), &mcpauth.APIKeyStoreOptions{CacheTTL: time.Minute, Clock: clock.now})
	h := mcpauth.Require(&mcpauth.RequireOptions{Events: events}, k)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	key, err := k.Create(context.Background(), mcpauth.APIKey{ExpiresAt: clock.now().Add(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Create(context.Background(), mcpauth.APIKey{ExpiresAt: clock.now()}); err == nil {
		t.Fatal("Create accepted a key that has expired already")
	}
	for _, tt := range []struct {
		after time.Duration
		want  int
	}{
		{0, http.StatusOK},
		{29 * time.Second, http.StatusOK},
		{time.Second, http.StatusUnauthorized},
	} {
		clock.add(tt.after)
		if w, _ := status(t, h, key); w.Code != tt.want {
			t.Fatalf("at +%v: %d, want %d", tt.after, w.Code, tt.want)
		}
	}
	ev := events.all()
	if last := ev[len(ev)-1]; last.Outcome != mcpauth.OutcomeFailure || last.Reason != "expired" {
		t.Fatalf("the expired key's event: %+v", last)
	}
}

// TestStoredAPIKeyStoreFaults checks that a store that fails, hangs or holds
// a bad record makes Require answer 503 with a spec-shaped body and
// Retry-After, never a pass; that a key cached before the fault keeps
// working until its cache entry ends; and that service resumes by itself
// when the store is back.
func TestStoredAPIKeyStoreFaults(t *testing.T) {
	for _, tt := range []struct {
		name   string
		break_ func(fs *faultyStore, key string)
		mend   func(fs *faultyStore, key string)
		detail string
	}{
		{"error", func(fs *faultyStore, _ string) { fs.failing.Store(true) }, func(fs *faultyStore, _ string) { fs.failing.Store(false) }, "API key store unavailable"},
		{"hang", func(fs *faultyStore, _ string) { fs.blocking.Store(true) }, func(fs *faultyStore, _ string) { fs.blocking.Store(false) }, "API key store unavailable"},
		{"bad record", func(fs *faultyStore, key string) {
			_ = fs.Store.Set(context.Background(), "apikey:"+mcpauth.HashAPIKey(key), []byte(`{"sub":"a b"}`), 0)
		}, func(fs *faultyStore, key string) {
			_ = fs.Store.Set(context.Background(), "apikey:"+mcpauth.HashAPIKey(key), []byte(`{"sub":"alice"}`), 0)
		}, "bad API key record"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			events := &eventLog{}
			fs := &faultyStore{Store: mcpauth.NewMemoryStore()}
			k := storedKeys(t, fs, &mcpauth.APIKeyStoreOptions{CacheTTL: 5 * time.Second, Clock: clock.now,
				Timeout: 50 * time.Millisecond, Events: events})
			h := protect(k)
			cached, err := k.Create(context.Background(), mcpauth.APIKey{Subject: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			if w, _ := status(t, h, cached); w.Code != http.StatusOK {
				t.Fatalf("before the fault: %d", w.Code)
			}
			tt.break_(fs, cached)
			if w, sub := status(t, h, cached); w.Code != http.StatusOK || sub != "alice" {
				t.Fatalf("cached key during the fault: %d %q, want 200 (from the cache)", w.Code, sub)
			}
			clock.add(5 * time.Second)
			for range 3 {
				w, sub := status(t, h, cached)
				if w.Code != http.StatusServiceUnavailable || sub != "" {
					t.Fatalf("during the fault: %d, handler saw %q; want 503 and no handler", w.Code, sub)
				}
				var body map[string]string
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "temporarily_unavailable" || body["error_description"] == "" {
					t.Fatalf("503 body %q", w.Body)
				}
				if got := w.Header().Get("Retry-After"); got != "1" {
					t.Fatalf("Retry-After %q, want 1", got)
				}
				if strings.Contains(w.Body.String(), errStoreDown.Error()) || strings.Contains(w.Body.String(), "deadline") {
					t.Fatalf("the body tells the store's error: %q", w.Body)
				}
			}
			faults := findEvents(events, mcpauth.EventKeySource, tt.detail)
			if len(faults) == 0 || faults[0].Reason != "apikeys_unavailable" || faults[0].KeyID != mcpauth.APIKeyID(cached) {
				t.Fatalf("key source events: %+v", events.all())
			}
			tt.mend(fs, cached)
			if w, sub := status(t, h, cached); w.Code != http.StatusOK || sub != "alice" {
				t.Fatalf("after the store came back: %d %q, want 200 alice", w.Code, sub)
			}
		})
	}
}

// TestStoredAPIKeyManagementFaults checks that Create, Delete and List
// report a store that fails, and change nothing.
func TestStoredAPIKeyManagementFaults(t *testing.T) {
	fs := &faultyStore{Store: mcpauth.NewMemoryStore()}
	k := storedKeys(t, fs, nil)
	ctx := context.Background()
	key, err := k.Create(ctx, mcpauth.APIKey{})
	if err != nil {
		t.Fatal(err)
	}
	fs.failing.Store(true)
	if _, err := k.Create(ctx, mcpauth.APIKey{}); !errors.Is(err, errStoreDown) {
		t.Fatalf("Create on a failing store: %v", err)
	}
	if n, err := k.Delete(ctx, mcpauth.APIKeyID(key)); n != 0 || !errors.Is(err, errStoreDown) {
		t.Fatalf("Delete on a failing store: %d, %v", n, err)
	}
	if _, err := k.List(ctx); !errors.Is(err, errStoreDown) {
		t.Fatalf("List on a failing store: %v", err)
	}
	fs.failing.Store(false)
	if w, _ := status(t, protect(k), key); w.Code != http.StatusOK {
		t.Fatalf("the key after a failed Delete: %d, want 200", w.Code)
	}
	// An ID is compared in one normal form: lower case.
	if n, err := k.Delete(ctx, strings.ToUpper(mcpauth.APIKeyID(key))); n != 1 || err != nil {
		t.Fatalf("Delete by an upper-case ID: %d, %v", n, err)
	}
}

// TestStoredAPIKeyUnknownFlood sends many concurrent requests with a few
// unknown keys: each reaches the store once per CacheTTL, however often it
// is sent, and a key with a bad checksum never does.
func TestStoredAPIKeyUnknownFlood(t *testing.T) {
	clock := newFakeClock()
	fs := &faultyStore{Store: mcpauth.NewMemoryStore()}
	k := storedKeys(t, fs, &mcpauth.APIKeyStoreOptions{CacheTTL: 5 * time.Second, Clock: clock.now})
	h := protect(k)
	var unknown []string
	for range 10 {
		u, _ := mcpauth.GenerateAPIKey()
		unknown = append(unknown, u)
	}
	bad := unknown[0][:len(unknown[0])-1] + "!"
	flood := func() {
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Go(func() {
				for i := range 40 {
					key := unknown[(g+i)%len(unknown)]
					if i%4 == 0 {
						key = bad
					}
					if w, _ := status(t, h, key); w.Code != http.StatusUnauthorized {
						t.Errorf("unknown key: %d, want 401", w.Code)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	flood()
	if got := fs.gets.Load(); got != int64(len(unknown)) {
		t.Fatalf("1280 requests with %d unknown keys made %d store reads, want %d", len(unknown), got, len(unknown))
	}
	clock.add(5 * time.Second)
	flood()
	if got := fs.gets.Load(); got != 2*int64(len(unknown)) {
		t.Fatalf("after CacheTTL: %d store reads in all, want %d", got, 2*len(unknown))
	}
}

// TestStoredAPIKeyConcurrentMiss sends one uncached key from many
// goroutines while the store is slow to answer: one read serves them all.
func TestStoredAPIKeyConcurrentMiss(t *testing.T) {
	fs := &faultyStore{Store: mcpauth.NewMemoryStore()}
	k := storedKeys(t, fs, nil)
	key, err := k.Create(context.Background(), mcpauth.APIKey{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	fs.gate, fs.entered = make(chan struct{}), make(chan struct{}, 1)
	h := protect(k)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if w, sub := status(t, h, key); w.Code != http.StatusOK || sub != "alice" {
				t.Errorf("%d %q, want 200 alice", w.Code, sub)
			}
		})
	}
	<-fs.entered // one read has started; let it finish
	close(fs.gate)
	wg.Wait()
	if got := fs.gets.Load(); got != 1 {
		t.Fatalf("50 requests with one key made %d store reads, want 1", got)
	}
}

// TestStoredAPIKeysRace authenticates, creates, deletes and lists at once
// from many goroutines (run with -race). A key deleted through an APIKeys
// is refused by it as soon as Delete returns, whatever reads of it were in
// flight.
func TestStoredAPIKeysRace(t *testing.T) {
	k := storedKeys(t, mcpauth.NewMemoryStore(), nil)
	h := protect(k)
	ctx := context.Background()
	var live []string
	for range 8 {
		key, err := k.Create(ctx, mcpauth.APIKey{Subject: "reader"})
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, key)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if w, _ := status(t, h, live[(g+i)%len(live)]); w.Code != http.StatusOK {
					t.Errorf("live key: %d", w.Code)
					return
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 25 {
				key, err := k.Create(ctx, mcpauth.APIKey{Subject: "churn"})
				if err != nil {
					t.Error(err)
					return
				}
				// Readers of the new key race with its deletion.
				var readers sync.WaitGroup
				for range 3 {
					readers.Go(func() { status(t, h, key) })
				}
				if n, err := k.Delete(ctx, mcpauth.APIKeyID(key)); n != 1 || err != nil {
					t.Errorf("Delete: %d, %v", n, err)
				}
				readers.Wait()
				if w, _ := status(t, h, key); w.Code != http.StatusUnauthorized {
					t.Errorf("a key deleted through this APIKeys: %d, want 401", w.Code)
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := k.List(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}

// TestUseStoreErrors checks the refusals of UseStore, Create, Delete and
// List.
func TestUseStoreErrors(t *testing.T) {
	static, _ := mcpauth.GenerateAPIKey()
	newKeys := func() *mcpauth.APIKeys {
		k, err := mcpauth.NewAPIKeys(mcpauth.APIKey{Key: static})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	st := mcpauth.NewMemoryStore()
	for _, tt := range []struct {
		name string
		st   mcpauth.Store
		opts *mcpauth.APIKeyStoreOptions
	}{
		{"nil store", nil, nil},
		{"negative CacheSize", st, &mcpauth.APIKeyStoreOptions{CacheSize: -1}},
		{"huge CacheSize", st, &mcpauth.APIKeyStoreOptions{CacheSize: 1 << 30}},
		{"negative Timeout", st, &mcpauth.APIKeyStoreOptions{Timeout: -time.Second}},
	} {
		if err := newKeys().UseStore(tt.st, tt.opts); err == nil {
			t.Errorf("UseStore with %s: no error", tt.name)
		}
	}
	k := newKeys()
	if err := k.UseStore(st, nil); err != nil {
		t.Fatal(err)
	}
	if err := k.UseStore(st, nil); err == nil {
		t.Error("a second UseStore: no error")
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		key  mcpauth.APIKey
	}{
		{"Key and Hash", mcpauth.APIKey{Key: static + "x", Hash: mcpauth.HashAPIKey(static)}},
		{"a key configured in code", mcpauth.APIKey{Key: static}},
		{"a short key", mcpauth.APIKey{Key: "short"}},
		{"a bad subject", mcpauth.APIKey{Subject: "a;b"}},
		{"a bad scope", mcpauth.APIKey{Scopes: []string{"a b"}}},
		{"a past expiry", mcpauth.APIKey{ExpiresAt: time.Now().Add(-time.Second)}},
	} {
		if got, err := k.Create(ctx, tt.key); err == nil || got != "" {
			t.Errorf("Create with %s = %q, %v; want an error", tt.name, got, err)
		}
	}
	for _, id := range []string{"", "abc", "zzzzzzzzzzzz", strings.Repeat("a", 65), "apikey:0123456789ab"} {
		if n, err := k.Delete(ctx, id); err == nil || n != 0 {
			t.Errorf("Delete(%q) = %d, %v; want an error", id, n, err)
		}
	}
	none := newKeys()
	if _, err := none.Create(ctx, mcpauth.APIKey{}); err == nil {
		t.Error("Create without a store: no error")
	}
	if _, err := none.Delete(ctx, mcpauth.APIKeyID(static)); err == nil {
		t.Error("Delete without a store: no error")
	}
	if _, err := none.List(ctx); err == nil {
		t.Error("List without a store: no error")
	}
	// Keys configured in code and stored keys work side by side.
	stored, err := k.Create(ctx, mcpauth.APIKey{Subject: "stored"})
	if err != nil {
		t.Fatal(err)
	}
	h := protect(k)
	for _, key := range []string{static, stored} {
		if w, _ := status(t, h, key); w.Code != http.StatusOK {
			t.Errorf("key: %d, want 200", w.Code)
		}
	}
}

// TestStoredAPIKeyEndToEnd connects go-sdk's client with a stored key in
// every protocol mode, then deletes the key: the next call is refused.
func TestStoredAPIKeyEndToEnd(t *testing.T) {
	for _, mode := range mcptest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			k := storedKeys(t, mcpauth.NewMemoryStore(), nil)
			key, err := k.Create(context.Background(), mcpauth.APIKey{Subject: "alice", Roles: []string{"editor"}})
			if err != nil {
				t.Fatal(err)
			}
			srv := mcptest.Serve(t, mcpauth.Require(quiet, k)(mode.Handler(newWhoamiServer())))
			cs, err := mcptest.Connect(t, mode, srv.URL, mcptest.NewHeaders("X-API-Key", key))
			if err != nil {
				t.Fatal(err)
			}
			got, err := callWhoami(t, cs)
			if err != nil || got["subject"] != "alice" || !hasRole(got, "editor") {
				t.Fatalf("whoami with a stored key: %v, %v", got, err)
			}
			if _, err := k.Delete(context.Background(), mcpauth.APIKeyID(key)); err != nil {
				t.Fatal(err)
			}
			if got, err := callWhoami(t, cs); err == nil {
				t.Fatalf("a call after the key was deleted succeeded: %v", got)
			}
		})
	}
}

// TestStoredAPIKeyRedisDown freezes and then kills a real redis-server under
// an APIKeys that reads it on every request: 503 while it does not answer,
// service again as soon as it does, without a restart of ours.
func TestStoredAPIKeyRedisDown(t *testing.T) {
	srv := testredis.Start(t)
	st, err := redis.Open(srv.URL(), &redis.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	k := storedKeys(t, st, &mcpauth.APIKeyStoreOptions{CacheTTL: -1, Timeout: 300 * time.Millisecond})
	h := protect(k)
	ctx := context.Background()
	key, err := k.Create(ctx, mcpauth.APIKey{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	expect := func(when string, want int) {
		t.Helper()
		if w, sub := status(t, h, key); w.Code != want || (want != http.StatusOK && sub != "") {
			t.Fatalf("%s: %d (handler saw %q), want %d", when, w.Code, sub, want)
		}
	}
	expect("redis up", http.StatusOK)
	srv.Pause()
	expect("redis frozen", http.StatusServiceUnavailable)
	srv.Resume()
	expect("redis resumed", http.StatusOK)
	srv.Stop()
	expect("redis stopped", http.StatusServiceUnavailable)
	srv.Restart() // empty: the key is gone with the data
	expect("redis restarted empty", http.StatusUnauthorized)
	if key, err = k.Create(ctx, mcpauth.APIKey{Subject: "alice"}); err != nil {
		t.Fatal(err)
	}
	expect("a key created after the restart", http.StatusOK)
}

// TestAPIKeysManagementEvents: a key added or revoked at run time is one
// EventKeyManagement each (a second revocation of one key is not), and no
// event holds the key.
func TestAPIKeysManagementEvents(t *testing.T) {
	ev := &events{}
	k, err := mcpauth.NewAPIKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.UseStore(mcpauth.NewMemoryStore(), &mcpauth.APIKeyStoreOptions{Events: ev}); err != nil {
		t.Fatal(err)
	}
	a, b := newKey(t), newKey(t)
	for _, key := range []string{a, b} {
		if err := k.Add(mcpauth.APIKey{Key: key, Subject: "ops"}); err != nil {
			t.Fatal(err)
		}
	}
	k.Revoke(a)
	k.Revoke(a)
	if n := k.RevokeID(mcpauth.APIKeyID(b)); n != 1 {
		t.Fatalf("RevokeID revoked %d keys", n)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var got []string
	for _, e := range ev.all {
		if e.Kind != mcpauth.EventKeyManagement {
			continue
		}
		got = append(got, e.Detail+" "+e.KeyID)
		if strings.Contains(fmt.Sprint(e), a) || strings.Contains(fmt.Sprint(e), b) {
			t.Errorf("an event holds a key: %+v", e)
		}
	}
	want := []string{"created " + mcpauth.APIKeyID(a), "created " + mcpauth.APIKeyID(b), "revoked " + mcpauth.APIKeyID(a), "revoked " + mcpauth.APIKeyID(b)}
	if !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}
