// Command oauth serves an MCP server protected by OAuth 2.1, with mcpauth's
// built-in authorization server in the same process.
//
//	go run ./examples/oauth [-addr 127.0.0.1:8080] [-issuer https://mcp.example.com] [-data mcpauth.db | -redis redis://127.0.0.1:6379/0] [-tls-cert cert.pem -tls-key key.pem] [-metrics]
//
// The authorization server's issuer is -issuer, the public base URL (by
// default http://127.0.0.1:<port> of -addr), and the MCP endpoint is
// <issuer>/mcp. Clients (Claude Code, VS Code, Cursor, go-sdk's
// auth.NewAuthorizationCodeHandler) need the URL alone: the 401 names the
// protected resource metadata, which names the authorization server, where
// they register themselves (dynamic client registration, open and rate
// limited) and send the user's browser to log in.
//
// Users come from MCPAUTH_USERS: comma-separated user:password or
// user:password:role|role (a password holds no ':' or ','), hashed at
// start-up. With none, it adds the user demo (role viewer) with a random
// password that it prints once.
//
// Its state (registered clients, codes, refresh-token families, consents,
// revocations, login transactions and the sealed signing keys) is kept in
// the bbolt file -data (mcpauth.db in the working directory by default):
// a restart, even a kill -9, keeps every client logged in. With -redis URL
// it is kept in Redis instead, so that several replicas (the same -issuer,
// each its own -addr) share it behind a load balancer.
//
// The secret that seals the signing keys and signs the browser cookies comes
// from MCPAUTH_SECRET (32 or more random bytes, base64), which -redis
// requires, the same on every replica. Without it, on bbolt, the server
// creates one in <data>.secret (mode 0600) on its first start: kept apart
// from the database, so that a copy of the database alone opens nothing.
//
// What stays in memory: the limit on registrations per address (each
// replica counts its own), the cache of client metadata documents, and
// the users of MCPAUTH_USERS, which every replica must be given alike (with
// -redis the demo user is refused: each replica would make its own
// password).
//
// It stands alone: copy main.go, serve.go and state.go into a module of
// your own.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/authserver"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// envUsers is the environment variable with the users.
const envUsers = "MCPAUTH_USERS"

// scope is the one scope the server knows and grants.
const scope = "mcp:tools"

// rememberConsent is how long a user's approval of a client is kept.
const rememberConsent = 30 * 24 * time.Hour

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
	fs := flag.NewFlagSet("oauth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf serverFlags
	sf.register(fs)
	var stf stateFlags
	stf.register(fs)
	issuer := fs.String("issuer", "", "the public base `URL` of the server (the authorization server's issuer; MCP is at <issuer>/mcp); default http://127.0.0.1:<port> of -addr")
	metrics := registerMetrics(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := stf.parsed(fs); err != nil {
		return err
	}
	logger := log.New(stderr, "", log.LstdFlags)

	users, err := parseUsers(getenv(envUsers))
	if err != nil {
		return err
	}
	if stf.redis != "" && len(users) == 0 {
		return fmt.Errorf("mcpauth: -redis needs %s, the same on every replica (a demo user's password would differ on each)", envUsers)
	}
	st, err := openState(ctx, &stf, getenv)
	if err != nil {
		return err
	}
	defer st.Close()
	l, err := sf.listen(logger)
	if err != nil {
		return err
	}
	defer l.Close() // serve closes it too; this is for the errors before
	if *issuer == "" {
		*issuer = strings.TrimSuffix(l.url, "/mcp")
	}
	eventLog := slog.New(slog.NewJSONHandler(stderr, nil)) // one JSON line per security event
	ro, withMetrics, err := observe(*metrics, mcpauth.LogEvents(eventLog))
	if err != nil {
		return err
	}
	cfg := config{
		issuer: *issuer,
		users:  users,
		store:  st.store,
		secret: st.secret,
		logger: eventLog,
	}
	if ro != nil {
		cfg.events = ro.Events
	}
	h, err := newHandler(cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	h.Handler = withMetrics(h.Handler)
	if h.demoPassword != "" {
		fmt.Fprintf(stdout, "No %s set: added the user demo (role viewer) with a password for this run. It is shown once.\n\n  user: demo\n  password: %s\n\n", envUsers, h.demoPassword)
		fmt.Fprintf(stdout, "To keep it across restarts: export %s='demo:%s:viewer'\n\n", envUsers, h.demoPassword)
	}
	if st.newSecret != "" {
		fmt.Fprintf(stdout, "Created the secret that seals the signing keys in %s: keep it with %s (without it, tokens and logins do not survive a restart).\n\n", st.newSecret, st.where)
	}
	printClients(stdout, "oauth-demo", h.mcpURL)
	logger.Printf("state in %s", st.where)
	logger.Printf("listening on %s", l.Addr())
	logger.Printf("MCP server on %s", h.mcpURL)
	return serve(ctx, l, h, logger)
}

// A userEntry is one user of MCPAUTH_USERS.
type userEntry struct {
	username, password string
	roles              []string
}

// maxUsers bounds how many users MCPAUTH_USERS may hold: each costs a
// PBKDF2 hash at start-up.
const maxUsers = 100

// parseUsers parses MCPAUTH_USERS: comma-separated user:password or
// user:password:role|role, with space around entries ignored. An error
// names the entry by its position and the username, never the password.
func parseUsers(env string) ([]userEntry, error) {
	var users []userEntry
	seen := map[string]bool{}
	for i, raw := range strings.Split(env, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		n := i + 1
		if len(users) == maxUsers {
			return nil, fmt.Errorf("mcpauth: %s: more than %d users", envUsers, maxUsers)
		}
		parts := strings.SplitN(raw, ":", 3)
		if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("mcpauth: %s: entry %d: want user:password or user:password:role|role", envUsers, n)
		}
		u := userEntry{username: parts[0], password: parts[1]}
		if !validName(u.username) {
			return nil, fmt.Errorf("mcpauth: %s: entry %d: a username is 1 to 64 letters, digits or ._@-", envUsers, n)
		}
		if seen[u.username] {
			return nil, fmt.Errorf("mcpauth: %s: entry %d: user %q twice", envUsers, n, u.username)
		}
		seen[u.username] = true
		if len(parts) == 3 {
			for r := range strings.SplitSeq(parts[2], "|") {
				if !validName(r) {
					// The part may be a password with a ':' in it: not shown.
					return nil, fmt.Errorf("mcpauth: %s: entry %d (user %q): a role is 1 to 64 letters, digits or ._@- (a password holds no ':')", envUsers, n, u.username)
				}
				u.roles = append(u.roles, r)
			}
		}
		users = append(users, u)
	}
	return users, nil
}

// validName reports whether s is a username or role this example accepts:
// a bounded, printable name that reads the same in logs and tokens.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("._@-", c)) {
			return false
		}
	}
	return true
}

// config is what newHandler needs.
type config struct {
	issuer string
	users  []userEntry // none: the demo user with a random password
	// iterations is the PBKDF2 iteration count of the password hashes;
	// zero means authserver.DefaultPasswordIterations. Tests lower it.
	iterations int
	// store keeps the state and secret seals the signing keys in it; nil
	// means in memory with a random secret (tests).
	store  mcpauth.Store
	secret []byte
	logger *slog.Logger
	// events receives the security events; nil means mcpauth.LogEvents
	// on logger.
	events mcpauth.EventSink
}

// handler serves the authorization server, the protected resource metadata
// and the MCP endpoint.
type handler struct {
	http.Handler
	mcpURL       string
	demoPassword string // set when cfg had no users
	verifier     *authserver.Verifier
	lockout      *mcpauth.Lockout
}

// Close releases the verifier and stops the lockout's sharing.
func (h *handler) Close() error {
	_ = h.lockout.Close()
	return h.verifier.Close()
}

// newHandler returns the server's handler for cfg.
func newHandler(cfg config) (*handler, error) {
	h := &handler{}
	iu, err := url.Parse(cfg.issuer)
	if err != nil {
		return nil, errors.New("mcpauth: -issuer is not a URL")
	}
	users, err := authserver.NewPasswordUsers(&authserver.PasswordUsersOptions{Iterations: cfg.iterations})
	if err != nil {
		return nil, err
	}
	entries := cfg.users
	if len(entries) == 0 {
		h.demoPassword = rand.Text()
		entries = []userEntry{{username: "demo", password: h.demoPassword, roles: []string{"viewer"}}}
	}
	for _, u := range entries {
		if err := users.Add(u.username, u.password, authserver.User{Subject: u.username, Roles: u.roles}); err != nil {
			return nil, err
		}
	}

	events := cfg.events
	if events == nil {
		events = mcpauth.LogEvents(cfg.logger)
	}
	// One lockout for the logins, the token endpoint and the MCP endpoint,
	// with the default thresholds; kept in the store, so that with -redis
	// every replica counts together.
	if h.lockout, err = mcpauth.NewLockout(&mcpauth.LockoutOptions{Store: cfg.store, Events: events}); err != nil {
		return nil, err
	}

	h.mcpURL = cfg.issuer + "/mcp"
	as, err := authserver.New(&authserver.Options{
		Events:    events,
		Lockout:   h.lockout,
		Issuer:    cfg.issuer,
		Resources: []string{h.mcpURL},
		Scopes:    []string{scope},
		Users:     users,
		Logger:    cfg.logger,
		Store:     cfg.store,
		Secret:    cfg.secret,
		// A user who approved a client is not asked again for 30 days
		// (the login still is); the approval is kept in the store.
		RememberConsent: rememberConsent,
		// Registration: open, rate limited per replica (the defaults).
	})
	if err != nil {
		return nil, err
	}
	pr, err := mcpauth.NewProtectedResource(mcpauth.ProtectedResourceOptions{
		Resource:             h.mcpURL,
		AuthorizationServers: []string{as.Issuer()},
		ScopesSupported:      []string{scope},
		ResourceName:         "mcpauth OAuth example",
	})
	if err != nil {
		return nil, err
	}
	if h.verifier, err = as.Verifier(h.mcpURL); err != nil {
		return nil, err
	}

	server := mcp.NewServer(&mcp.Implementation{Name: "mcpauth-oauth", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "hello", Description: "Greet someone"}, hello)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "Show who you are authenticated as"}, whoami)
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)

	mux := http.NewServeMux()
	// The metadata is public: clients read it before they have a token.
	mux.Handle("/.well-known/oauth-protected-resource/", pr)
	mux.Handle("/.well-known/oauth-protected-resource", pr)
	mux.Handle(iu.Path+"/mcp", mcpauth.Require(&mcpauth.RequireOptions{Resource: pr, Events: events, Lockout: h.lockout}, h.verifier)(mcpHandler))
	mux.Handle("/", as) // its metadata, keys, registration, authorize, login, consent, token, ...
	h.Handler = mux
	return h, nil
}

type helloIn struct {
	Name string `json:"name" jsonschema:"the name to greet"`
}

type helloOut struct {
	Greeting string `json:"greeting"`
}

func hello(_ context.Context, _ *mcp.CallToolRequest, in helloIn) (*mcp.CallToolResult, helloOut, error) {
	g := "Hello, " + in.Name + "!"
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: g}}}, helloOut{Greeting: g}, nil
}

// caller is the caller as the whoami tool shows it.
type caller struct {
	Subject string   `json:"subject"`
	Method  string   `json:"method"`
	Roles   []string `json:"roles"`
	Scopes  []string `json:"scopes"`
}

// whoami reports the caller. It reads the principal from the request, never
// from ctx, which in a session belongs to the session's first request: see
// mcpauth.PrincipalFromRequest.
func whoami(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, caller, error) {
	p := mcpauth.PrincipalFromRequest(req)
	if p == nil {
		return nil, caller{}, errors.New("not authenticated")
	}
	// Empty lists, not null, for clients that iterate over them.
	c := caller{Subject: p.Subject, Method: string(p.Method), Roles: []string{}, Scopes: []string{}}
	c.Roles = append(c.Roles, p.Roles...)
	c.Scopes = append(c.Scopes, p.Scopes...)
	return nil, c, nil
}
