// Package storetest is the contract that every [mcpauth.Store] passes: the
// in-memory store, the bbolt and Redis backends, and any third-party one.
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) mcpauth.Store { return newMyStore(t) })
//	}
//
// Each subtest gets a store of its own from newStore. Expiry is checked with
// short real ttls and bounded waits, since a backend's clock cannot be
// injected.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth"
)

// shortTTL is the ttl of entries that a test waits to see expire.
const shortTTL = 150 * time.Millisecond

// Run runs the contract against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) mcpauth.Store) {
	ctx := context.Background()
	tests := []struct {
		name string
		f    func(t *testing.T, s mcpauth.Store)
	}{
		{"GetMissing", func(t *testing.T, s mcpauth.Store) {
			if _, err := s.Get(ctx, "k:missing"); !errors.Is(err, mcpauth.ErrNotFound) {
				t.Errorf("Get of a missing key: %v, want ErrNotFound", err)
			}
		}},
		{"SetGet", func(t *testing.T, s mcpauth.Store) {
			v := []byte("value")
			must(t, s.Set(ctx, "k:a", v, 0))
			v[0] = 'X' // the store keeps its own copy
			got := get(t, s, "k:a")
			if string(got) != "value" {
				t.Fatalf("Get = %q, want value", got)
			}
			got[0] = 'Y' // and hands out copies
			if got := get(t, s, "k:a"); string(got) != "value" {
				t.Errorf("Get after changing a returned value = %q", got)
			}
			must(t, s.Set(ctx, "k:a", []byte("second"), 0))
			if got := get(t, s, "k:a"); string(got) != "second" {
				t.Errorf("Get after a second Set = %q", got)
			}
		}},
		{"EmptyAndBinaryValues", func(t *testing.T, s mcpauth.Store) {
			must(t, s.Set(ctx, "k:empty", nil, 0))
			if got := get(t, s, "k:empty"); len(got) != 0 {
				t.Errorf("empty value read back as %q", got)
			}
			bin := []byte{0, 1, 2, 0xff, '\n', 0}
			must(t, s.Set(ctx, "k:bin", bin, 0))
			if got := get(t, s, "k:bin"); !bytes.Equal(got, bin) {
				t.Errorf("binary value read back as %q", got)
			}
		}},
		{"Create", func(t *testing.T, s mcpauth.Store) {
			must(t, s.Create(ctx, "k:c", []byte("first"), 0))
			if err := s.Create(ctx, "k:c", []byte("second"), 0); !errors.Is(err, mcpauth.ErrExists) {
				t.Errorf("second Create: %v, want ErrExists", err)
			}
			if got := get(t, s, "k:c"); string(got) != "first" {
				t.Errorf("a refused Create changed the value to %q", got)
			}
		}},
		{"TakeOnce", func(t *testing.T, s mcpauth.Store) {
			must(t, s.Set(ctx, "k:t", []byte("code"), 0))
			got, err := s.Take(ctx, "k:t")
			if err != nil || string(got) != "code" {
				t.Fatalf("Take = %q, %v", got, err)
			}
			if _, err := s.Take(ctx, "k:t"); !errors.Is(err, mcpauth.ErrNotFound) {
				t.Errorf("second Take: %v, want ErrNotFound", err)
			}
			if _, err := s.Get(ctx, "k:t"); !errors.Is(err, mcpauth.ErrNotFound) {
				t.Errorf("Get after Take: %v, want ErrNotFound", err)
			}
		}},
		{"Delete", func(t *testing.T, s mcpauth.Store) {
			must(t, s.Set(ctx, "k:d", []byte("x"), 0))
			must(t, s.Delete(ctx, "k:d"))
			if _, err := s.Get(ctx, "k:d"); !errors.Is(err, mcpauth.ErrNotFound) {
				t.Errorf("Get after Delete: %v", err)
			}
			must(t, s.Delete(ctx, "k:never"))
			must(t, s.Create(ctx, "k:d", []byte("again"), 0))
		}},
		{"Incr", func(t *testing.T, s mcpauth.Store) {
			for want := int64(1); want <= 3; want++ {
				n, err := s.Incr(ctx, "n:a", 0)
				if err != nil || n != want {
					t.Fatalf("Incr = %d, %v, want %d", n, err, want)
				}
			}
			if got := get(t, s, "n:a"); string(got) != "3" {
				t.Errorf("counter reads %q, want 3", got)
			}
			must(t, s.Set(ctx, "n:text", []byte("not a number"), 0))
			if _, err := s.Incr(ctx, "n:text", 0); err == nil || errors.Is(err, mcpauth.ErrNotFound) {
				t.Errorf("Incr of text: %v, want an error", err)
			}
		}},
		{"NegativeTTL", func(t *testing.T, s mcpauth.Store) {
			if err := s.Set(ctx, "k:neg", []byte("x"), -time.Second); err == nil {
				t.Error("Set with a negative ttl succeeded")
			}
			if err := s.Create(ctx, "k:neg", []byte("x"), -time.Second); err == nil {
				t.Error("Create with a negative ttl succeeded")
			}
			if _, err := s.Incr(ctx, "k:neg", -time.Second); err == nil {
				t.Error("Incr with a negative ttl succeeded")
			}
		}},
		{"Expiry", func(t *testing.T, s mcpauth.Store) {
			must(t, s.Set(ctx, "e:get", []byte("x"), shortTTL))
			must(t, s.Set(ctx, "e:take", []byte("x"), shortTTL))
			must(t, s.Create(ctx, "e:create", []byte("old"), shortTTL))
			must(t, s.Set(ctx, "e:keep", []byte("x"), time.Hour))
			must(t, s.Set(ctx, "e:forever", []byte("x"), 0))
			if _, err := s.Incr(ctx, "e:count", shortTTL); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Incr(ctx, "e:count", time.Hour); err != nil { // keeps the first ttl
				t.Fatal(err)
			}
			if got := get(t, s, "e:get"); string(got) != "x" {
				t.Fatalf("fresh entry reads %q", got)
			}
			waitGone(t, s, "e:get")
			// e:count was written last, so once it is gone every short
			// entry is past its deadline, however slow the writes were.
			waitGone(t, s, "e:count")
			if _, err := s.Take(ctx, "e:take"); !errors.Is(err, mcpauth.ErrNotFound) {
				t.Errorf("Take of an expired entry: %v, want ErrNotFound", err)
			}
			if err := s.Create(ctx, "e:create", []byte("new"), 0); err != nil {
				t.Errorf("Create over an expired entry: %v", err)
			}
			if n, err := s.Incr(ctx, "e:count", 0); err != nil || n != 1 {
				t.Errorf("Incr of an expired counter = %d, %v, want 1", n, err)
			}
			for _, k := range []string{"e:keep", "e:forever"} {
				if _, err := s.Get(ctx, k); err != nil {
					t.Errorf("%s: %v, want it kept", k, err)
				}
			}
		}},
		{"List", func(t *testing.T, s mcpauth.Store) {
			for i := range 5 {
				must(t, s.Set(ctx, fmt.Sprintf("l:%d", i), []byte(strconv.Itoa(i)), 0))
			}
			must(t, s.Set(ctx, "lx:other", []byte("x"), 0))
			must(t, s.Set(ctx, "m:other", []byte("x"), 0))
			must(t, s.Set(ctx, "l:short", []byte("x"), shortTTL))
			waitGone(t, s, "l:short")
			var keys []string
			err := s.List(ctx, "l:", func(k string, v []byte) error {
				keys = append(keys, k+"="+string(v))
				// fn may use the store.
				_, err := s.Get(ctx, k)
				return err
			})
			must(t, err)
			sort.Strings(keys)
			if got, want := fmt.Sprint(keys), "[l:0=0 l:1=1 l:2=2 l:3=3 l:4=4]"; got != want {
				t.Errorf("List = %s, want %s", got, want)
			}
			stop := errors.New("stop")
			calls := 0
			err = s.List(ctx, "l:", func(string, []byte) error { calls++; return stop })
			if !errors.Is(err, stop) || calls != 1 {
				t.Errorf("List with fn failing: %v after %d calls", err, calls)
			}
		}},
		{"ConcurrentTake", func(t *testing.T, s mcpauth.Store) {
			for round := range 20 {
				key := fmt.Sprintf("race:take:%d", round)
				must(t, s.Set(ctx, key, []byte("code"), time.Minute))
				wins := race(t, 16, func() error { _, err := s.Take(ctx, key); return err })
				if wins != 1 {
					t.Fatalf("round %d: %d Takes won, want exactly 1", round, wins)
				}
			}
		}},
		{"ConcurrentCreate", func(t *testing.T, s mcpauth.Store) {
			for round := range 20 {
				key := fmt.Sprintf("race:create:%d", round)
				wins := race(t, 16, func() error { return s.Create(ctx, key, []byte("x"), time.Minute) })
				if wins != 1 {
					t.Fatalf("round %d: %d Creates won, want exactly 1", round, wins)
				}
			}
		}},
		{"ConcurrentIncr", func(t *testing.T, s mcpauth.Store) {
			const n = 200
			seen := make(chan int64, n)
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := s.Incr(ctx, "race:incr", time.Minute)
					if err != nil {
						t.Error(err)
					}
					seen <- v
				}()
			}
			wg.Wait()
			close(seen)
			got := map[int64]bool{}
			for v := range seen {
				if got[v] {
					t.Fatalf("two Incrs returned %d", v)
				}
				got[v] = true
			}
			if c := get(t, s, "race:incr"); string(c) != strconv.Itoa(n) {
				t.Errorf("counter = %s, want %d", c, n)
			}
		}},
		{"CancelledContext", func(t *testing.T, s mcpauth.Store) {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if err := s.Set(cctx, "k:cancel", []byte("x"), 0); err == nil {
				t.Error("Set with a cancelled context succeeded")
			}
			if _, err := s.Get(cctx, "k:cancel"); err == nil || errors.Is(err, mcpauth.ErrNotFound) {
				t.Errorf("Get with a cancelled context: %v, want the context's error", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f(t, newStore(t))
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, s mcpauth.Store, key string) []byte {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	return v
}

// waitGone waits, a bounded time, for key to expire.
func waitGone(t *testing.T, s mcpauth.Store, key string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Get(context.Background(), key)
		if errors.Is(err, mcpauth.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("Get %s: %v", key, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not expired 5 s after a ttl of %v", key, shortTTL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// race runs f in n goroutines released together and returns how many got
// no error.
func race(t *testing.T, n int, f func() error) int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		wins  int
		start = make(chan struct{})
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := f()
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, mcpauth.ErrNotFound) && !errors.Is(err, mcpauth.ErrExists) {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return wins
}
