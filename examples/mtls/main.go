// Command mtls serves an MCP server whose clients authenticate with a TLS
// client certificate.
//
//	go run ./examples/mtls [-addr 127.0.0.1:8443] [-certs ./certs] [-metrics]
//
// On first run it generates a throwaway CA, a server certificate for
// 127.0.0.1 and localhost, and a client certificate (CN=demo-client) in the
// -certs folder: ca.pem, server.pem, server-key.pem, client.pem,
// client-key.pem. Later runs use the files there, so replacing them with
// your own CA's works too (server.pem and server-key.pem are reloaded when
// they change, and so is ca.pem). At start-up it sends itself an MCP
// initialize request with the client certificate, and one without, and
// prints the curl command and client configuration only once both answered
// as they should.
//
// It stands alone: copy main.go and serve.go into a module of your own.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mcpauth/mcpauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

// The files of the -certs folder.
const (
	fileCA        = "ca.pem"
	fileServer    = "server.pem"
	fileServerKey = "server-key.pem"
	fileClient    = "client.pem"
	fileClientKey = "client-key.pem"
)

var certFiles = []string{fileCA, fileServer, fileServerKey, fileClient, fileClientKey}

// run is main with its surroundings passed in, so that a test can run it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("mtls", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var sf serverFlags
	sf.register(flags)
	dir := flags.String("certs", "./certs", "`folder` of the certificates: used if they are there, generated if it holds none of them")
	metrics := registerMetrics(flags)
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	logger := log.New(stderr, "", log.LstdFlags)

	generated, err := ensureCerts(*dir, time.Now())
	if err != nil {
		return err
	}
	if generated {
		logger.Printf("generated a throwaway CA, a server and a client certificate in %s", *dir)
	}
	path := func(name string) string { return filepath.Join(*dir, name) }
	auth, err := mcpauth.NewMTLS(mcpauth.MTLSOptions{
		ClientCAFiles: []string{path(fileCA)},
		CertFile:      path(fileServer),
		KeyFile:       path(fileServerKey),
	})
	if err != nil {
		return err
	}
	tlsConfig, err := auth.TLSConfig()
	if err != nil {
		return err
	}
	ro, withMetrics, err := observe(*metrics, nil)
	if err != nil {
		return err
	}
	l, err := sf.listen(tlsConfig)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, l, withMetrics(newHandler(auth, ro)), logger) }()
	files := clientFiles{ca: path(fileCA), cert: path(fileClient), key: path(fileClientKey)}
	if err := selfCheck(ctx, l.url, files); err != nil {
		cancel()
		<-served
		return fmt.Errorf("start-up check against %s: %w", l.url, err)
	}
	printClients(stdout, l.url, files)
	logger.Printf("MCP server on %s", l.url)
	return <-served
}

// newHandler returns the server's handler: the quickstart's tools behind
// the client-certificate authenticator, with Require's options ro (nil:
// the defaults).
func newHandler(auth *mcpauth.MTLS, ro *mcpauth.RequireOptions) http.Handler {
	server := mcp.NewServer(&mcp.Implementation{Name: "mcpauth-mtls", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "hello", Description: "Greet someone"}, hello)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "Show who you are authenticated as"}, whoami)
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcpauth.Require(ro, auth)(handler))
	return mux
}

// selfCheck sends the printed curl command's request to url with the
// client certificate, which must succeed, and without, which must be
// refused with 401: what is printed has been seen to work.
func selfCheck(ctx context.Context, url string, f clientFiles) error {
	caPEM, err := os.ReadFile(f.ca)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s holds no certificate", f.ca)
	}
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return err
	}
	post := func(certs []tls.Certificate) (int, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(initializeBody)))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, nil
	}
	if status, err := post([]tls.Certificate{cert}); err != nil || status != http.StatusOK {
		return fmt.Errorf("with the client certificate: status %d, %v (does the server certificate name the host of -addr?)", status, err)
	}
	if status, err := post(nil); err != nil || status != http.StatusUnauthorized {
		return fmt.Errorf("without a client certificate: status %d, %v, want 401", status, err)
	}
	return nil
}

// ensureCerts uses the certificates in dir, or generates them if dir holds
// none of them. A folder with only some is an error: generating the others
// would not match them.
func ensureCerts(dir string, now time.Time) (generated bool, _ error) {
	present := 0
	for _, name := range certFiles {
		_, err := os.Stat(filepath.Join(dir, name))
		switch {
		case err == nil:
			present++
		case !errors.Is(err, fs.ErrNotExist):
			return false, err
		}
	}
	switch present {
	case len(certFiles):
		return false, nil
	case 0:
	default:
		return false, fmt.Errorf("%s holds some of %v but not all: remove them to generate new ones, or add the rest", dir, certFiles)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	out, err := generate(now)
	if err != nil {
		return false, err
	}
	for _, name := range certFiles {
		// O_EXCL: never overwrite a file that appeared meanwhile.
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return false, err
		}
		_, err = f.Write(out[name])
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// generate makes the throwaway CA, the server certificate for 127.0.0.1,
// ::1 and localhost, and the client certificate for CN=demo-client, all
// valid for 90 days, as PEM files by name.
func generate(now time.Time) (map[string][]byte, error) {
	out := map[string][]byte{}
	newKey := func() (*ecdsa.PrivateKey, []byte, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), err
	}
	serial := func() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128)) }
	caKey, _, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	validity := 90 * 24 * time.Hour
	ca := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: "mcpauth example CA (throwaway)"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	out[fileCA] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	leaf := func(tmpl *x509.Certificate, certName, keyName string) error {
		k, keyPEM, err := newKey()
		if err != nil {
			return err
		}
		if tmpl.SerialNumber, err = serial(); err != nil {
			return err
		}
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(validity)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return err
		}
		out[certName], out[keyName] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM
		return nil
	}
	if err := leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, fileServer, fileServerKey); err != nil {
		return nil, err
	}
	if err := leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "demo-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, fileClient, fileClientKey); err != nil {
		return nil, err
	}
	return out, nil
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
