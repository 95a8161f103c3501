package redis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/testredis"
	"github.com/mcpauth/mcpauth/store/storetest"
)

var prefixes atomic.Int64

// newTestStore opens a store on srv under a prefix no other store of this
// test binary uses, so that tests can share one server.
func newTestStore(t testing.TB, srv *testredis.Server, opts Options) *Store {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = fmt.Sprintf("test%d:", prefixes.Add(1))
	}
	s, err := Open(srv.URL(), &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	srv := testredis.Start(t)
	storetest.Run(t, func(t *testing.T) mcpauth.Store { return newTestStore(t, srv, Options{}) })
}

// TestContractNew runs the contract on a client made by the caller, with
// the default prefix.
func TestContractNew(t *testing.T) {
	srv := testredis.Start(t)
	storetest.Run(t, func(t *testing.T) mcpauth.Store {
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = c.Close() })
		if err := c.FlushDB(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		s, err := New(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil { // leaves the caller's client open
			t.Fatal(err)
		}
		return s
	})
}

// TestNewRefusesClientWithoutContextTimeouts: such a client would let a
// call outlive Options.Timeout.
func TestNewRefusesClientWithoutContextTimeouts(t *testing.T) {
	const addr = "127.0.0.1:1"
	for _, tt := range []struct {
		name string
		c    goredis.UniversalClient
		ok   bool
	}{
		{"Client", goredis.NewClient(&goredis.Options{Addr: addr}), false},
		{"Client, ReadTimeout -2", goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, ReadTimeout: -2}), false},
		{"Client, WriteTimeout -2", goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, WriteTimeout: -2}), false},
		{"Client, timeouts -1", goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, ReadTimeout: -1, WriteTimeout: -1}), true},
		{"ClusterClient", goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{addr}}), false},
		{"ClusterClient, ReadTimeout -2", goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true, ReadTimeout: -2}), false},
		{"ClusterClient, ctx", goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true, ReadTimeout: -1}), true},
		{"Ring", goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": addr}}), false},
		{"Ring, WriteTimeout -2", goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": addr}, ContextTimeoutEnabled: true, WriteTimeout: -2}), false},
		{"Ring, ctx", goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"a": addr}, ContextTimeoutEnabled: true}), true},
	} {
		_, err := New(tt.c, nil)
		if tt.ok && err != nil {
			t.Errorf("New(%s): %v", tt.name, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "ContextTimeoutEnabled")) {
			t.Errorf("New(%s): %v, want it refused", tt.name, err)
		}
		_ = tt.c.Close()
	}
	if _, err := New(nil, nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestOptions(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer c.Close()
	for _, o := range []Options{{Timeout: -1}, {Prefix: strings.Repeat("p", maxPrefix+1)}} {
		if _, err := New(c, &o); err == nil {
			t.Errorf("New with %+v succeeded", o)
		}
	}
	s, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.prefix != "mcpauth:" || s.timeout != 2*time.Second {
		t.Errorf("defaults: prefix %q, timeout %v", s.prefix, s.timeout)
	}
}

// TestOpenURL: Open reads redis:// and rediss:// URLs, and a URL it
// cannot read is an error that does not quote the password in it.
func TestOpenURL(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/0", "rediss://:pw@redis.example:6380/2", "redis://user:pw@[::1]:6379"} {
		s, err := Open(u, nil)
		if err != nil {
			t.Errorf("Open(%q): %v", u, err)
			continue
		}
		if !s.client.(*goredis.Client).Options().ContextTimeoutEnabled {
			t.Errorf("Open(%q): client without ContextTimeoutEnabled", u)
		}
		_ = s.Close()
	}
	for _, u := range []string{"redis://user:hunter2-pw@127.0.0.1:notaport/0", "http://user:hunter2-pw@127.0.0.1/", "redis://:hunter2-pw@127.0.0.1/notadb", "redis://:hunter2-pw@host:1/0?pool_size=hunter2-pw"} {
		_, err := Open(u, nil)
		if err == nil {
			t.Errorf("Open(%q) succeeded", u)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || !strings.HasPrefix(err.Error(), "mcpauth: redis: ") {
			t.Errorf("Open(%q): %v", u, err)
		}
	}
}

// TestPrefix: stores with different prefixes do not see each other's
// keys, and List matches its prefix and the store's literally, though both
// hold glob characters.
func TestPrefix(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	a := newTestStore(t, srv, Options{Prefix: "app[1]*:"})
	b := newTestStore(t, srv, Options{Prefix: "app[1]x:"})
	c := newTestStore(t, srv, Options{Prefix: "app1:"})
	for _, s := range []*Store{a, b, c} {
		must(t, s.Set(ctx, "k?:1", []byte(s.prefix), 0))
		must(t, s.Set(ctx, "kx:1", []byte(s.prefix), 0))
		must(t, s.Set(ctx, `k\:1`, []byte(s.prefix), 0))
	}
	for _, s := range []*Store{a, b, c} {
		if v, err := s.Get(ctx, "k?:1"); err != nil || string(v) != s.prefix {
			t.Errorf("%s: Get = %q, %v", s.prefix, v, err)
		}
		var keys []string
		must(t, s.List(ctx, "k?", func(k string, v []byte) error {
			keys = append(keys, k+"="+string(v))
			return nil
		}))
		if want := "[k?:1=" + s.prefix + "]"; fmt.Sprint(keys) != want {
			t.Errorf("%s: List(k?) = %v, want %s", s.prefix, keys, want)
		}
	}
	// The keys are where the prefix says, in Redis.
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	if v, err := raw.Get(ctx, "app[1]*:kx:1").Result(); err != nil || v != "app[1]*:" {
		t.Errorf("raw GET = %q, %v", v, err)
	}
}

// TestListMany lists more keys than one SCAN batch, with other keys around.
func TestListMany(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := newTestStore(t, srv, Options{})
	other := newTestStore(t, srv, Options{})
	const n = 3*scanCount + 7
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	_, err := raw.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range n {
			p.Set(ctx, fmt.Sprintf("%sl:%d", s.prefix, i), "v", 0)
			p.Set(ctx, fmt.Sprintf("%sm:%d", s.prefix, i), "v", 0)
			p.Set(ctx, fmt.Sprintf("%sl:%d", other.prefix, i), "v", 0)
		}
		return nil
	})
	must(t, err)
	seen := map[string]int{}
	must(t, s.List(ctx, "l:", func(k string, v []byte) error {
		seen[k]++
		return nil
	}))
	if len(seen) != n {
		t.Errorf("List found %d keys, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 || !strings.HasPrefix(k, "l:") {
			t.Fatalf("List: %s %d times", k, c)
		}
	}
}

// TestShortTTL: a ttl under a millisecond is rounded up, not down to zero,
// which Redis would read as no expiry.
func TestShortTTL(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := newTestStore(t, srv, Options{})
	must(t, s.Set(ctx, "k:set", []byte("x"), time.Microsecond))
	must(t, s.Create(ctx, "k:create", []byte("x"), time.Nanosecond))
	if _, err := s.Incr(ctx, "k:incr", 500*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, k := range []string{"k:set", "k:create", "k:incr"} {
		for {
			_, err := s.Get(ctx, k)
			if errors.Is(err, mcpauth.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s with a sub-millisecond ttl still there after 5 s: %v", k, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestIncrKeepsTTL checks in Redis itself that Incr sets a ttl on the key
// it creates only.
func TestIncrKeepsTTL(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := newTestStore(t, srv, Options{})
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer raw.Close()
	if _, err := s.Incr(ctx, "n:a", time.Hour); err != nil {
		t.Fatal(err)
	}
	must(t, raw.PExpire(ctx, s.prefix+"n:a", time.Minute).Err())
	if n, err := s.Incr(ctx, "n:a", time.Hour); err != nil || n != 2 {
		t.Fatalf("Incr = %d, %v", n, err)
	}
	if ttl := raw.PTTL(ctx, s.prefix+"n:a").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("counter's ttl after a second Incr: %v, want the minute it had", ttl)
	}
	if _, err := s.Incr(ctx, "n:forever", 0); err != nil {
		t.Fatal(err)
	}
	if ttl := raw.PTTL(ctx, s.prefix+"n:forever").Val(); ttl != -1 {
		t.Errorf("counter made with ttl 0 has PTTL %v, want -1 (none)", ttl)
	}
}

func TestErrorsCarryNoValue(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := newTestStore(t, srv, Options{})
	must(t, s.Set(ctx, "n:secret", []byte("hunter2-secret"), 0))
	_, err := s.Incr(ctx, "n:secret", 0)
	if !errors.Is(err, errNotCounter) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Incr of text: %v", err)
	}
}

var rounds atomic.Int64

// allOps calls every method of s once, on keys of its own (a command that
// timed out may still run when Redis wakes), and returns their errors by
// name.
func allOps(s *Store) map[string]error {
	ctx := context.Background()
	r := rounds.Add(1)
	k := func(name string) string { return fmt.Sprintf("k:%d:%s", r, name) }
	errs := map[string]error{}
	_, errs["Get"] = s.Get(ctx, "k:present")
	errs["Set"] = s.Set(ctx, k("new"), []byte("x"), time.Minute)
	errs["Create"] = s.Create(ctx, k("created"), []byte("x"), time.Minute)
	_, errs["Take"] = s.Take(ctx, "k:taken")
	errs["Delete"] = s.Delete(ctx, "k:deleted")
	_, errs["Incr"] = s.Incr(ctx, k("count"), time.Minute)
	errs["List"] = s.List(ctx, "k:", func(string, []byte) error { return nil })
	errs["Ping"] = s.Ping(ctx)
	return errs
}

// allOpsWithin runs allOps, failing the test if it has not returned after
// a bound far above the store's timeout.
func allOpsWithin(t *testing.T, s *Store) map[string]error {
	t.Helper()
	done := make(chan map[string]error, 1)
	go func() { done <- allOps(s) }()
	select {
	case errs := <-done:
		return errs
	case <-time.After(30 * time.Second):
		t.Fatalf("operations still waiting 30 s into an outage, with a %v timeout", s.timeout)
		return nil
	}
}

func seed(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	must(t, s.Set(ctx, "k:present", []byte("x"), 0))
	must(t, s.Set(ctx, "k:taken", []byte("x"), 0))
	must(t, s.Set(ctx, "k:deleted", []byte("x"), 0))
}

// wantAllFail: during an outage, every method answers with an error that is
// not one of the store's answers: callers must not read "not found" (a
// revoked token passing) or "exists" into a fault.
func wantAllFail(t *testing.T, errs map[string]error) {
	t.Helper()
	for op, err := range errs {
		if err == nil || errors.Is(err, mcpauth.ErrNotFound) || errors.Is(err, mcpauth.ErrExists) {
			t.Errorf("%s during the outage: %v, want a fault", op, err)
		} else if !strings.HasPrefix(err.Error(), "mcpauth: redis: ") {
			t.Errorf("%s: %q lacks the package's prefix", op, err)
		}
	}
}

func wantAllSucceed(t *testing.T, s *Store) {
	t.Helper()
	seed(t, s)
	for op, err := range allOpsWithin(t, s) {
		if err != nil {
			t.Errorf("%s after the outage: %v", op, err)
		}
	}
}

// waitPing waits, a bounded time, for the store to reach Redis again.
func waitPing(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Ping(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("store has not reconnected 10 s after Redis came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisDown stops Redis under a store in use: every method fails,
// without a panic or a hang, and works again once Redis is back on the
// same port, with the same Store.
func TestRedisDown(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, srv, Options{Timeout: 300 * time.Millisecond})
	wantAllSucceed(t, s) // connections in the pool, the script cached

	srv.Stop()
	wantAllFail(t, allOpsWithin(t, s))
	wantAllFail(t, allOpsWithin(t, s)) // and again, now that the pool knows

	srv.Restart() // empty, and without the Incr script
	waitPing(t, s)
	wantAllSucceed(t, s)
}

// TestRedisFrozen freezes Redis (connections open, nothing answered): the
// case a timeout is for. Every method fails within the store's timeout
// rather than waiting, and works again once Redis resumes.
//
// It runs on a store from Open and on one from New with a client whose own
// timeouts never fire, so that only Options.Timeout can end a call.
func TestRedisFrozen(t *testing.T) {
	srv := testredis.Start(t)
	opts := Options{Timeout: 200 * time.Millisecond}
	patient := goredis.NewClient(&goredis.Options{
		Addr: srv.Addr(), ContextTimeoutEnabled: true,
		DialTimeout: time.Hour, ReadTimeout: -1, WriteTimeout: -1, PoolTimeout: time.Hour,
	})
	defer patient.Close()
	opts.Prefix = "frozen:new:"
	fromNew, err := New(patient, &opts)
	must(t, err)
	opts.Prefix = ""
	for name, s := range map[string]*Store{"Open": newTestStore(t, srv, opts), "New": fromNew} {
		t.Run(name, func(t *testing.T) {
			wantAllSucceed(t, s)

			srv.Pause()
			t.Cleanup(srv.Resume)
			errs := allOpsWithin(t, s)
			wantAllFail(t, errs)
			for op, err := range errs {
				var nerr interface{ Timeout() bool }
				if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &nerr) && nerr.Timeout()) {
					t.Errorf("%s while Redis is frozen: %v, want a timeout", op, err)
				}
			}

			srv.Resume()
			waitPing(t, s)
			wantAllSucceed(t, s)
		})
	}
}

// TestTakeRaceAcrossProcesses runs two child processes, each with its own
// client, as two replicas would: both Take the same keys at the same time,
// and each key is won by exactly one.
func TestTakeRaceAcrossProcesses(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	s := newTestStore(t, srv, Options{})
	const keys = 200
	for i := range keys {
		must(t, s.Set(ctx, fmt.Sprintf("code:%d", i), []byte("v"), time.Minute))
	}

	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		lines <-chan string
	}
	var children []child
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "MCPAUTH_REDIS_HELPER=take", "MCPAUTH_REDIS_URL="+srv.URL(),
			"MCPAUTH_REDIS_PREFIX="+s.prefix, fmt.Sprintf("MCPAUTH_REDIS_KEYS=%d", keys))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		must(t, err)
		stdout, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if l, ok := strings.CutPrefix(sc.Text(), "helper: "); ok {
					lines <- l
				}
			}
		}()
		children = append(children, child{cmd, stdin, lines})
	}
	for i, c := range children {
		if l := <-c.lines; l != "ready" {
			t.Fatalf("child %d: %q", i, l)
		}
	}
	for _, c := range children { // as close together as two writes go
		_, _ = io.WriteString(c.stdin, "go\n")
	}
	won := map[string][]int{}
	for i, c := range children {
		for l := range c.lines {
			if k, ok := strings.CutPrefix(l, "won "); ok {
				won[k] = append(won[k], i)
			} else if l != "done" {
				t.Errorf("child %d: %s", i, l)
			}
		}
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("child %d: %v", i, err)
		}
	}
	perChild := [2]int{}
	for i := range keys {
		k := fmt.Sprintf("code:%d", i)
		if w := won[k]; len(w) != 1 {
			t.Errorf("%s won by children %v, want exactly one", k, w)
		} else {
			perChild[w[0]]++
		}
	}
	t.Logf("keys won per child: %v", perChild)
}

// TestHelperProcess is the child of TestTakeRaceAcrossProcesses; run
// directly, it does nothing.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("MCPAUTH_REDIS_HELPER") != "take" {
		t.Skip("the child process of other tests")
	}
	s, err := Open(os.Getenv("MCPAUTH_REDIS_URL"), &Options{Prefix: os.Getenv("MCPAUTH_REDIS_PREFIX")})
	if err != nil {
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil { // connected before the start
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	var n int
	fmt.Sscan(os.Getenv("MCPAUTH_REDIS_KEYS"), &n)
	fmt.Println("helper: ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(1)
	}
	// Goroutines that each try every key, in an order of their own, so
	// that each key is contended by both processes, not only the keys
	// where one process catches up with the other.
	var (
		mu  sync.Mutex
		won []string
		wg  sync.WaitGroup
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(g))).Perm(n)
			for _, i := range order {
				k := fmt.Sprintf("code:%d", i)
				_, err := s.Take(ctx, k)
				mu.Lock()
				switch {
				case err == nil:
					won = append(won, k)
				case !errors.Is(err, mcpauth.ErrNotFound):
					fmt.Println("helper: Take:", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(won)
	for _, k := range won {
		fmt.Println("helper: won " + k)
	}
	fmt.Println("helper: done")
	os.Exit(0)
}

func TestEscapeGlob(t *testing.T) {
	for in, want := range map[string]string{
		"mcpauth:":   "mcpauth:",
		"a*b?c[d]e":  `a\*b\?c\[d\]e`,
		`back\slash`: `back\\slash`,
		"^-":         `\^\-`,
	} {
		if got := escapeGlob(in); got != want {
			t.Errorf("escapeGlob(%q) = %q, want %q", in, got, want)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
