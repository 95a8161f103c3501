// Package audittap lets a test binary see every security event its parts
// produce and every secret they were handed, so that one check at the end
// of the run (in TestMain) proves that no event carried a secret.
//
// It is off unless a test binary calls Enable; then each hook costs one
// atomic load. The hooks sit where events leave mcpauth (the root's emit,
// the authorization server's record) and where secrets enter it
// (credential headers at Require, secret parameters and issued tokens at
// the authorization server).
package audittap

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// minSecretLen is the shortest secret checked: shorter ones (a test's
// "wrong" password) would match ordinary words of events.
const minSecretLen = 12

var (
	on       atomic.Bool
	mu       sync.Mutex
	recorded int
	events   = map[string]struct{}{} // distinct texts
	secrets  = map[string]struct{}{}
)

// Enable starts collecting.
func Enable() { on.Store(true) }

// On reports whether collecting is on.
func On() bool { return on.Load() }

// Event records the text of an event, as its sink would see it; callers
// leave out its time, so that repeats are kept once.
func Event(text string) {
	if !on.Load() {
		return
	}
	mu.Lock()
	recorded++
	events[text] = struct{}{}
	mu.Unlock()
}

// Secret records a secret the code was handed or made.
func Secret(s string) {
	if !on.Load() || len(s) < minSecretLen {
		return
	}
	mu.Lock()
	secrets[s] = struct{}{}
	mu.Unlock()
}

// JSON records the values of the members of a JSON object that hold
// secrets: tokens and client secrets a response hands out.
func JSON(b []byte) {
	if !on.Load() {
		return
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return
	}
	for _, k := range []string{"access_token", "refresh_token", "id_token", "client_secret", "registration_access_token"} {
		if s, ok := m[k].(string); ok {
			Secret(s)
		}
	}
}

// Leaks returns how many events and secrets were collected, and each
// event that holds a secret, with the secret's first characters.
func Leaks() (nEvents, nSecrets int, leaks []string) {
	mu.Lock()
	defer mu.Unlock()
	byPrefix := make(map[string][]string, len(secrets))
	for s := range secrets {
		p := s[:minSecretLen]
		byPrefix[p] = append(byPrefix[p], s)
	}
	for e := range events {
		for i := 0; i+minSecretLen <= len(e); i++ {
			for _, s := range byPrefix[e[i:i+minSecretLen]] {
				if strings.HasPrefix(e[i:], s) {
					leaks = append(leaks, s[:4]+"…: "+e)
				}
			}
		}
	}
	return recorded, len(secrets), leaks
}

// Run enables collecting, runs the tests (a TestMain's m.Run), and then
// fails the run if an event held a secret, naming each. With verbose it
// also says how many events and secrets it checked.
//
// It collects nothing in a run of benchmarks (-test.bench set), so that
// they measure the code, not the tap.
func Run(run func() int, verbose bool) int {
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		return run()
	}
	Enable()
	code := run()
	n, s, leaks := Leaks()
	for _, l := range leaks {
		fmt.Fprintln(os.Stderr, "audittap: an event holds a secret:", l)
	}
	if len(leaks) > 0 {
		return 1
	}
	if verbose {
		fmt.Fprintf(os.Stderr, "audittap: %d events checked against %d secrets: none holds one\n", n, s)
	}
	return code
}
