// This file is the same in every example: it serves the handler the way a
// server facing a network should, and prints what clients need to connect.
// Copy it with main.go.

package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"
)

// serverFlags say where and how to serve.
type serverFlags struct {
	addr, tlsCert, tlsKey string
}

func (f *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with the certificate (chain) in this PEM `file`; needs -tls-key")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the private key of -tls-cert, a PEM `file`")
}

// check refuses half a TLS configuration: serving plain HTTP when the user
// meant HTTPS would send every credential in the clear.
func (f *serverFlags) check() error {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("set both -tls-cert and -tls-key, or neither")
	}
	return nil
}

// url is the URL of the MCP endpoint for a client on this host.
func (f *serverFlags) url() string { return clientURL(f.addr, f.tlsCert != "") }

// clientURL returns the URL of the MCP endpoint of a server listening on
// addr, as a client on this host reaches it. A wildcard address (":8080",
// "0.0.0.0:8080", "[::]:8080") is every interface, which no client can dial:
// the URL names the loopback address instead. (Go listens on "[::]" for IPv4
// too, so 127.0.0.1 reaches all three.)
func clientURL(addr string, https bool) string {
	scheme := "http"
	if https {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return scheme + "://" + addr + "/mcp" // net.Listen reports the error
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/mcp"
}

// plainHTTPWarning is the warning to log when serving plain HTTP on addr, or
// "" when addr is reachable from this host only. API keys and tokens are
// bearer credentials: whoever reads one off the network can use it.
func plainHTTPWarning(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err == nil {
		if ip := net.ParseIP(host); strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback() {
			return ""
		}
	}
	return fmt.Sprintf("WARNING: serving plain HTTP on %s, beyond this host: API keys and tokens are bearer credentials "+
		"that anyone on the network path can read and replay. Serve HTTPS (-tls-cert and -tls-key, or a TLS-terminating "+
		"proxy in front) or listen on 127.0.0.1.", addr)
}

// A listener is the server's open socket and the URL clients reach it by.
type listener struct {
	net.Listener
	tls *tls.Config // nil: plain HTTP
	url string
}

// listen opens the socket of f, loading the TLS certificate first so that a
// bad one stops the server before it accepts anything.
func (f *serverFlags) listen(logger *log.Logger) (*listener, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	l := &listener{}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, err
		}
		l.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	} else if w := plainHTTPWarning(f.addr); w != "" {
		logger.Print(w)
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return nil, err
	}
	l.Listener = ln
	// The host as the user spelt it, the port as bound (which -addr :0 picks).
	host, _, _ := net.SplitHostPort(f.addr)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	l.url = clientURL(net.JoinHostPort(host, port), l.tls != nil)
	return l, nil
}

// newHTTPServer returns the server for h, with the limits a server facing a
// network needs.
func newHTTPServer(h http.Handler, tlsConfig *tls.Config, logger *log.Logger) *http.Server {
	return &http.Server{
		Handler:   h,
		TLSConfig: tlsConfig,
		ErrorLog:  logger,
		// Bound what a slow or idle client can hold: the request headers
		// must arrive within ReadHeaderTimeout, the whole request (MCP
		// requests are small JSON-RPC messages) within ReadTimeout, and
		// an idle keep-alive connection is closed after IdleTimeout.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10, // a JWT is a few KB; the default is 1 MB
		// No WriteTimeout: it bounds the whole response, and MCP answers
		// with server-sent events (SSE) that stay open as long as a tool
		// runs or, for the GET notification stream, as long as the client
		// is connected. A WriteTimeout would cut them off mid-stream.
		// (ReadTimeout does not: Go lifts the read deadline once the
		// handler has read the request.)
	}
}

// serve serves h on l until ctx is done (main cancels it on SIGINT or
// SIGTERM), then shuts down gracefully: it stops accepting, lets requests in
// flight finish for up to shutdownTimeout, and then closes what is left.
func serve(ctx context.Context, l *listener, h http.Handler, logger *log.Logger) error {
	srv := newHTTPServer(h, l.tls, logger)
	errc := make(chan error, 1)
	go func() {
		if l.tls != nil {
			errc <- srv.ServeTLS(l, "", "")
		} else {
			errc <- srv.Serve(l)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Print("shutting down")
	// A GET notification stream never finishes on its own: Shutdown waits
	// for it until the timeout, and Close then ends it.
	const shutdownTimeout = 5 * time.Second
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	return err
}

// printClients prints the configuration of each client for the MCP endpoint
// at url, with the credential sent as "Authorization: Bearer <credential>".
// README.md ("Configure clients") says how each was checked.
func printClients(w io.Writer, name, url, credential string) {
	bearer := "Bearer " + credential
	indent := func(v any) string {
		b, _ := json.MarshalIndent(v, "  ", "  ")
		return "  " + string(b)
	}
	type headers struct {
		Authorization string `json:"Authorization"`
	}
	fmt.Fprintf(w, "Claude Code:\n  claude mcp add --transport http %s %s --header %q\n\n", name, url, "Authorization: "+bearer)

	// claude_desktop_config.json takes local (stdio) servers only: Claude
	// Desktop reaches this one through mcp-remote, a stdio-to-HTTP bridge.
	// The header goes in an environment variable and is written without a
	// space in args, because some clients split arguments on spaces when
	// they start npx (mcp-remote's README).
	type stdioServer struct {
		Command string            `json:"command"`
		Args    []string          `json:"args"`
		Env     map[string]string `json:"env"`
	}
	fmt.Fprintf(w, "Claude Desktop (claude_desktop_config.json; needs Node.js for npx):\n%s\n\n", indent(struct {
		MCPServers map[string]stdioServer `json:"mcpServers"`
	}{map[string]stdioServer{name: {
		Command: "npx",
		Args:    []string{"-y", "mcp-remote", url, "--header", "Authorization:${AUTH_HEADER}"},
		Env:     map[string]string{"AUTH_HEADER": bearer},
	}}}))

	// VS Code asks for the credential once and keeps it in its secret
	// storage, so that a .vscode/mcp.json committed to a repository holds
	// none.
	type input struct {
		Type        string `json:"type"`
		ID          string `json:"id"`
		Description string `json:"description"`
		Password    bool   `json:"password"`
	}
	type vscodeServer struct {
		Type    string  `json:"type"`
		URL     string  `json:"url"`
		Headers headers `json:"headers"`
	}
	id := name + "-credential"
	fmt.Fprintf(w, "VS Code (.vscode/mcp.json; asks for the credential when the server starts):\n%s\n\n", indent(struct {
		Inputs  []input                 `json:"inputs"`
		Servers map[string]vscodeServer `json:"servers"`
	}{
		[]input{{"promptString", id, "API key or token for " + name, true}},
		map[string]vscodeServer{name: {"http", url, headers{"Bearer ${input:" + id + "}"}}},
	}))

	type urlServer struct {
		URL     string  `json:"url"`
		Headers headers `json:"headers"`
	}
	fmt.Fprintf(w, "Cursor (~/.cursor/mcp.json):\n%s\n\n", indent(struct {
		MCPServers map[string]urlServer `json:"mcpServers"`
	}{map[string]urlServer{name: {url, headers{bearer}}}}))
}
