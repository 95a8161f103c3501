// This file is the same as in the other examples but for TLS, which is
// always on and configured by mcpauth.MTLS rather than by flags, and for
// printClients: it serves the handler the way a server facing a network
// should, and prints what clients need to connect, which for mTLS is a
// certificate. Copy it with main.go.

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

// serverFlags say where to serve.
type serverFlags struct {
	addr string
}

func (f *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8443", "address to listen on")
}

// clientURL returns the URL of the MCP endpoint of a server listening on
// addr, as a client on this host reaches it. A wildcard address (":8443",
// "0.0.0.0:8443", "[::]:8443") is every interface, which no client can dial:
// the URL names the loopback address instead. (Go listens on "[::]" for IPv4
// too, so 127.0.0.1 reaches all three.)
func clientURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "https://" + addr + "/mcp" // net.Listen reports the error
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, port) + "/mcp"
}

// A listener is the server's open socket and the URL clients reach it by.
type listener struct {
	net.Listener
	tls *tls.Config
	url string
}

// listen opens the socket of f, to be served with tlsConfig.
func (f *serverFlags) listen(tlsConfig *tls.Config) (*listener, error) {
	if tlsConfig == nil {
		return nil, errors.New("no TLS configuration")
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return nil, err
	}
	// The host as the user spelt it, the port as bound (which -addr :0 picks).
	host, _, _ := net.SplitHostPort(f.addr)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return &listener{Listener: ln, tls: tlsConfig, url: clientURL(net.JoinHostPort(host, port))}, nil
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
	go func() { errc <- srv.ServeTLS(l, "", "") }()
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

// clientFiles are the files a client presents and trusts.
type clientFiles struct {
	ca, cert, key string
}

// printClients prints what a client needs to reach the MCP endpoint at url
// with a client certificate: the curl command that the server sent to
// itself at start-up (initializeBody, with the same files), and the files
// and URL to give any MCP client that takes a client certificate.
func printClients(w io.Writer, url string, f clientFiles) {
	fmt.Fprintf(w, "curl (checked at start-up with these files):\n  curl --cacert %s --cert %s --key %s -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d '%s' %s\n\n",
		f.ca, f.cert, f.key, initializeBody, url)
	fmt.Fprintf(w, "An MCP client that takes a client certificate (go-sdk: an http.Client whose tls.Config has the certificate and the CA):\n")
	fmt.Fprintf(w, "  URL                 %s\n  CA certificate      %s\n  client certificate  %s\n  client key          %s\n\n", url, f.ca, f.cert, f.key)
}

// initializeBody is the MCP initialize request of the printed curl command
// and of the start-up check.
const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`
