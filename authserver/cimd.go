package authserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcpauth/mcpauth"
)

// Bounds of client ID metadata documents.
const (
	maxDocumentSize   = 64 << 10
	maxDocumentMaxAge = 24 * time.Hour
	failureCacheTTL   = 30 * time.Second
	maxCachedClients  = 1000
)

// metadataFetcher fetches client ID metadata documents (draft-ietf-oauth-
// client-id-metadata-document): an https client_id is the URL of a JSON
// document that describes the client. The fetch refuses to connect to an
// address that is not public (checked on the address dialled, after DNS,
// so a name that resolves to 127.0.0.1 does not pass), follows no
// redirect, reads at most 64 KiB and gives up after a timeout. Documents
// are cached as Cache-Control says, within bounds; failures for 30 s.
type metadataFetcher struct {
	s             *Server
	http          *http.Client
	defaultMaxAge time.Duration

	mu    sync.Mutex
	cache map[string]cimdEntry
}

type cimdEntry struct {
	c     *client
	err   error
	until time.Time
}

func newMetadataFetcher(s *Server, o *ClientMetadataOptions) (*metadataFetcher, error) {
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	f := &metadataFetcher{s: s, defaultMaxAge: o.DefaultMaxAge, cache: map[string]cimdEntry{}}
	if f.defaultMaxAge == 0 {
		f.defaultMaxAge = 5 * time.Minute
	}
	if f.defaultMaxAge > maxDocumentMaxAge {
		return nil, errors.New("mcpauth: authserver: ClientMetadata.DefaultMaxAge is over 24 hours")
	}
	allowed := slices.Clone(o.AllowedNetworks)
	dialer := &net.Dialer{
		Timeout: timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("mcpauth: authserver: dialling %q: not an address", address)
			}
			if !reachable(ap.Addr(), allowed) {
				return errBlockedAddress
			}
			return nil
		},
	}
	var tlsConfig *tls.Config
	if o.TLSConfig != nil {
		tlsConfig = o.TLSConfig.Clone()
	}
	f.http = &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                  nil, // a proxy would dial for us, past the address check
			DialContext:            dialer.DialContext,
			TLSClientConfig:        tlsConfig,
			TLSHandshakeTimeout:    timeout,
			ResponseHeaderTimeout:  timeout,
			MaxIdleConns:           16,
			IdleConnTimeout:        30 * time.Second,
			MaxResponseHeaderBytes: 16 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f, nil
}

var errBlockedAddress = errors.New("mcpauth: authserver: client metadata URL resolves to an address that is not public")

// blockedPrefixes are ranges that are not public although netip's
// predicates do not say so.
var blockedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
		"::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32", "2002::/16",
	} {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}()

// reachable reports whether a fetch may connect to addr: a public address,
// or one of the allowed networks. Loopback, private (including fd00:ec2::254),
// link-local (including 169.254.169.254), multicast and unspecified
// addresses are not public.
func reachable(addr netip.Addr, allowed []netip.Prefix) bool {
	addr = addr.Unmap()
	for _, p := range allowed {
		if p.Contains(addr) {
			return true
		}
	}
	if !addr.IsValid() || addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() ||
		addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// validDocumentURL checks a client_id that names a metadata document: an
// https URL with a path, no fragment, no user information, no dot segments.
func validDocumentURL(id string) bool {
	if len(id) > maxURILen || strings.ContainsAny(id, "#\\") {
		return false
	}
	u, err := url.Parse(id)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" {
		return false
	}
	if u.Path == "" || u.Path == "/" {
		return false
	}
	for seg := range strings.SplitSeq(u.EscapedPath(), "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// client returns the client a metadata document describes, or
// errUnknownClient when there is none to be had.
func (f *metadataFetcher) client(ctx context.Context, id string) (*client, error) {
	if !validDocumentURL(id) {
		return nil, errUnknownClient
	}
	now := f.s.now()
	f.mu.Lock()
	e, ok := f.cache[id]
	f.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.c, e.err
	}
	c, maxAge, reason := f.fetch(ctx, id)
	var err error
	if c == nil {
		err = errUnknownClient
		maxAge = failureCacheTTL
		f.s.record(nil, mcpauth.Event{Kind: EventClientMetadata, Outcome: mcpauth.OutcomeFailure, ClientID: id, Reason: reason})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if maxAge > 0 {
		if len(f.cache) >= maxCachedClients {
			// Full: drop what has expired, then whatever comes first, down
			// to half, so that a flood of client IDs costs bounded memory.
			for k, old := range f.cache {
				if !now.Before(old.until) {
					delete(f.cache, k)
				}
			}
			for k := range f.cache {
				if len(f.cache) < maxCachedClients/2 {
					break
				}
				delete(f.cache, k)
			}
		}
		f.cache[id] = cimdEntry{c: c, err: err, until: now.Add(maxAge)}
	} else {
		delete(f.cache, id)
	}
	return c, err
}

// fetch gets and checks the document. reason says why it failed.
func (f *metadataFetcher) fetch(ctx context.Context, id string) (c *client, maxAge time.Duration, reason string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, 0, "url"
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.http.Do(req)
	if err != nil {
		if errors.Is(err, errBlockedAddress) {
			return nil, 0, "blocked_address"
		}
		return nil, 0, "fetch"
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, "status_" + strconv.Itoa(resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
	if err != nil {
		return nil, 0, "fetch"
	}
	if len(body) > maxDocumentSize {
		return nil, 0, "too_large"
	}
	md, raw, err := parseMetadata(body)
	if err != nil {
		return nil, 0, "document"
	}
	// The document must name itself, exactly.
	if docID, _ := raw["client_id"].(string); docID != id {
		return nil, 0, "client_id_mismatch"
	}
	if name, _ := raw["client_name"].(string); name == "" {
		return nil, 0, "no_client_name"
	}
	if _, ok := raw["client_secret"]; ok {
		return nil, 0, "client_secret"
	}
	if m := md.TokenEndpointAuthMethod; m != "" && m != authNone {
		return nil, 0, "auth_method" // private_key_jwt is not supported
	}
	c, e := f.s.clientFromMetadata(md, sourceMetadata)
	if e != nil {
		return nil, 0, e.code
	}
	c.ID, c.AuthMethod = id, authNone
	if c.Name == "" {
		c.Name = req.URL.Host
	}
	return c, f.maxAge(resp.Header.Values("Cache-Control")), ""
}

// maxAge reads how long a document may be cached: its max-age, at most 24
// hours; nothing for no-store or no-cache; the default without either.
func (f *metadataFetcher) maxAge(cc []string) time.Duration {
	age := f.defaultMaxAge
	for _, h := range cc {
		for d := range strings.SplitSeq(h, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache":
				return 0
			case strings.HasPrefix(d, "max-age="):
				n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				if n > int64(maxDocumentMaxAge/time.Second) {
					n = int64(maxDocumentMaxAge / time.Second)
				}
				age = time.Duration(n) * time.Second
			}
		}
	}
	return age
}
