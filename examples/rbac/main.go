// Command rbac serves the tutorial's four tools behind API keys and the RBAC
// guard: each caller sees, and may call, only the tools of its role.
//
//	go run ./examples/rbac [-addr 127.0.0.1:8080] [-policy policy.yaml] [-tls-cert cert.pem -tls-key key.pem] [-metrics]
//
// Roles form a hierarchy, admin ⊇ editor ⊇ viewer:
//
//	read-data     viewer   100 calls/min per caller
//	write-data    editor    50 calls/min
//	delete-data   admin     10 calls/min
//	manage-users  admin     20 calls/min
//
// Keys come from MCP_API_KEYS as KEY:SUBJECT:ROLE entries, comma-separated.
// With none, it generates one key per role and prints them once. A key whose
// role the policy does not declare stops it at start-up.
//
// It stands alone: copy main.go and serve.go (and policy.yaml, if you use
// -policy) into a module of your own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/mcpauth/mcpauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

// run is main with its surroundings passed in, so that a test can run it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rbac", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf serverFlags
	sf.register(fs)
	policyFile := fs.String("policy", "", "JSON or YAML policy `file`; empty means the tutorial's policy, built in Go")
	metrics := registerMetrics(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	logger := log.New(stderr, "", log.LstdFlags)

	policy := tutorialPolicy()
	if *policyFile != "" {
		var err error
		if policy, err = mcpauth.LoadPolicy(*policyFile); err != nil {
			return err
		}
	}
	ro, withMetrics, err := observe(*metrics, nil)
	if err != nil {
		return err
	}
	h, generated, err := newHandler(getenv(mcpauth.EnvAPIKeys), policy, ro)
	if err != nil {
		return err
	}
	h = withMetrics(h)
	l, err := sf.listen(logger)
	if err != nil {
		return err
	}
	if len(generated) > 0 {
		printGenerated(stdout, l.url, generated)
	}
	logger.Printf("MCP server on %s", l.url)
	return serve(ctx, l, h, logger)
}

// printGenerated prints the generated keys once, how to keep them, and the
// client configurations for the first (the viewer's).
func printGenerated(w io.Writer, url string, keys []mcpauth.APIKey) {
	fmt.Fprintf(w, "No %s set: generated one API key per role for this run. They are shown once.\n\n", mcpauth.EnvAPIKeys)
	entries := make([]string, len(keys))
	for i, k := range keys {
		fmt.Fprintf(w, "  %-7s %s\n", k.Roles[0], k.Key)
		entries[i] = k.Key + ":" + k.Subject + ":" + k.Roles[0]
	}
	fmt.Fprintf(w, "\nTo keep them across restarts:\n  export %s='%s'\n\n", mcpauth.EnvAPIKeys, strings.Join(entries, ","))
	fmt.Fprintf(w, "Clients, with the %s key (put another role's key in its place to see that role's tools):\n\n", keys[0].Roles[0])
	printClients(w, "rbac", url, keys[0].Key)
}

// tutorialPolicy is the tutorial's permission table.
func tutorialPolicy() *mcpauth.Policy {
	return &mcpauth.Policy{
		Roles: map[string][]string{
			"admin":  {"editor"}, // admin may do all that editor may
			"editor": {"viewer"},
			"viewer": nil,
		},
		Rules: []mcpauth.Rule{
			{Tool: "read-data", Roles: []string{"viewer"}, RateLimit: "100/min"},
			{Tool: "write-data", Roles: []string{"editor"}, RateLimit: "50/min"},
			{Tool: "delete-data", Roles: []string{"admin"}, RateLimit: "10/min"},
			{Tool: "manage-users", Roles: []string{"admin"}, RateLimit: "20/min"},
		},
	}
}

// newHandler returns the server's handler for the keys in env (the
// MCP_API_KEYS format) and the policy. With no keys it generates one per
// role and returns them. Require runs with ro (nil: the defaults, lockout
// included), and the guard reports to ro's Events.
func newHandler(env string, policy *mcpauth.Policy, ro *mcpauth.RequireOptions) (_ http.Handler, generated []mcpauth.APIKey, _ error) {
	keys, err := mcpauth.ParseAPIKeys(env)
	if err != nil {
		return nil, nil, err
	}
	if len(keys) == 0 {
		for _, role := range []string{"viewer", "editor", "admin"} {
			k, err := mcpauth.GenerateAPIKey()
			if err != nil {
				return nil, nil, err
			}
			keys = append(keys, mcpauth.APIKey{Key: k, Subject: role + "-user", Roles: []string{role}})
		}
		generated = keys
	}
	auth, err := mcpauth.NewAPIKeys(keys...)
	if err != nil {
		return nil, nil, err
	}

	var gopts *mcpauth.GuardOptions
	if ro != nil {
		gopts = &mcpauth.GuardOptions{Events: ro.Events}
	}
	guard, err := mcpauth.NewGuard(policy, gopts)
	if err != nil {
		return nil, nil, err
	}
	// A key whose role the policy does not declare (a misspelt "admn")
	// would be allowed nothing, silently: refuse to start instead.
	if err := guard.CheckRoles(auth.Roles()...); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", mcpauth.EnvAPIKeys, err)
	}

	server := mcp.NewServer(&mcp.Implementation{Name: "mcpauth-rbac", Version: "1.0.0"}, nil)
	addTools(server, newStore())
	// Validate before serving: a rule for a tool the server lacks is an
	// error; a tool no rule covers is logged (it is denied to everyone).
	if err := guard.Validate(context.Background(), server); err != nil {
		return nil, nil, err
	}
	guard.Install(server)

	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpauth.Require(ro, auth)(guard.RequireScopes(nil)(handler)))
	return mux, generated, nil
}

// store is the in-memory data the tools work on.
type store struct {
	mu    sync.Mutex
	data  map[string]string
	users map[string]string
}

func newStore() *store {
	return &store{
		data:  map[string]string{"greeting": "hello, world"},
		users: map[string]string{},
	}
}

type (
	ReadIn struct {
		Key string `json:"key" jsonschema:"the key to read"`
	}
	ReadOut struct {
		Found bool   `json:"found"`
		Value string `json:"value"`
	}
	WriteIn struct {
		Key   string `json:"key" jsonschema:"the key to write"`
		Value string `json:"value" jsonschema:"the value to store"`
	}
	DeleteIn struct {
		Key string `json:"key" jsonschema:"the key to delete"`
	}
	DoneOut struct {
		Done bool `json:"done"`
	}
	UserIn struct {
		User string `json:"user" jsonschema:"the user to change"`
		Role string `json:"role" jsonschema:"the user's new role"`
	}
	UsersOut struct {
		Users []string `json:"users"`
	}
)

func addTools(s *mcp.Server, st *store) {
	mcp.AddTool(s, &mcp.Tool{Name: "read-data", Description: "Read a value (viewer)"},
		func(_ context.Context, _ *mcp.CallToolRequest, in ReadIn) (*mcp.CallToolResult, ReadOut, error) {
			st.mu.Lock()
			defer st.mu.Unlock()
			v, ok := st.data[in.Key]
			return nil, ReadOut{Found: ok, Value: v}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "write-data", Description: "Write a value (editor)"},
		func(_ context.Context, _ *mcp.CallToolRequest, in WriteIn) (*mcp.CallToolResult, DoneOut, error) {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.data[in.Key] = in.Value
			return nil, DoneOut{Done: true}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "delete-data", Description: "Delete a value (admin)"},
		func(_ context.Context, _ *mcp.CallToolRequest, in DeleteIn) (*mcp.CallToolResult, DoneOut, error) {
			st.mu.Lock()
			defer st.mu.Unlock()
			_, ok := st.data[in.Key]
			delete(st.data, in.Key)
			return nil, DoneOut{Done: ok}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "manage-users", Description: "Set a user's role (admin)"},
		func(_ context.Context, _ *mcp.CallToolRequest, in UserIn) (*mcp.CallToolResult, UsersOut, error) {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.users[in.User] = in.Role
			out := UsersOut{Users: []string{}}
			for u, r := range st.users {
				out.Users = append(out.Users, u+":"+r)
			}
			sort.Strings(out.Users)
			return nil, out, nil
		})
}
