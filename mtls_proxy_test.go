package mcpauth

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// TestMTLSProxy takes the client certificate from a proxy's header, only
// from a trusted address, and checks it as if it had been presented here.
func TestMTLSProxy(t *testing.T) {
	key, _ := GenerateAPIKey()
	keys, err := NewAPIKeys(APIKey{Key: key, Subject: "key-user"})
	if err != nil {
		t.Fatal(err)
	}
	for _, hdr := range []string{"X-Forwarded-Client-Cert", "X-SSL-Client-Cert"} {
		t.Run(hdr, func(t *testing.T) {
			for _, trusted := range []bool{true, false} {
				proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:127.0.0.1/128")} // the mapped form is normalised
				if !trusted {
					proxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
				}
				e := newMTLSEnv(t, func(o *MTLSOptions) { o.ProxyHeader, o.TrustedProxies = hdr, proxies })
				now := e.clock.Now()
				good := e.clientCA.issue(t, "proxied-client", now, nil)
				other := newTestCA(t, "other", now).issue(t, "intruder", now, nil)
				noEKU := e.clientCA.issue(t, "no-eku", now, func(c *x509.Certificate) { c.ExtKeyUsage = nil })
				value := func(c *issued) string {
					if hdr == envoyHeader {
						return `By=spiffe://proxy.example/envoy;Hash=0123;Cert="` + escapedPEM(c.certPEM) + `";Subject="CN=x,OU=a;b";URI=`
					}
					return escapedPEM(c.certPEM)
				}
				srv := httptest.NewServer(Require(&RequireOptions{Events: e.events}, e.m, keys)(whoamiHandler))
				t.Cleanup(srv.Close)

				type want struct {
					status  int
					subject string
					reason  string
				}
				tests := []struct {
					name      string
					header    []string
					ifTrusted want
					otherwise want
				}{
					{"valid certificate", []string{hdr, value(good)}, want{200, "proxied-client", ""}, want{401, "", "untrusted_proxy_header"}},
					{"valid certificate and an API key", []string{hdr, value(good), "X-API-Key", key}, want{200, "key-user", ""}, want{401, "", "untrusted_proxy_header"}},
					{"certificate of another CA", []string{hdr, value(other)}, want{401, "", "cert_untrusted"}, want{401, "", "untrusted_proxy_header"}},
					{"certificate of another CA and an API key", []string{hdr, value(other), "X-API-Key", key}, want{401, "", "cert_untrusted"}, want{401, "", "untrusted_proxy_header"}},
					{"no client-auth EKU", []string{hdr, value(noEKU)}, want{401, "", "cert_usage"}, want{401, "", "untrusted_proxy_header"}},
					{"garbage", []string{hdr, "%%%not pem"}, want{401, "", "bad_cert_header"}, want{401, "", "untrusted_proxy_header"}},
					{"oversized", []string{hdr, strings.Repeat("A", maxProxyHeader+1)}, want{401, "", "bad_cert_header"}, want{401, "", "untrusted_proxy_header"}},
					{"no header", nil, want{401, "", "no_credentials"}, want{401, "", "no_credentials"}},
					{"no header, an API key", []string{"X-API-Key", key}, want{200, "key-user", ""}, want{200, "key-user", ""}},
				}
				for _, tt := range tests {
					w := tt.otherwise
					if trusted {
						w = tt.ifTrusted
					}
					status, p, err := get(t, srv.Client(), srv.URL, tt.header...)
					if err != nil {
						t.Fatal(err)
					}
					if status != w.status || p.Subject != w.subject {
						t.Errorf("trusted=%v %s: %d %q, want %d %q", trusted, tt.name, status, p.Subject, w.status, w.subject)
					}
					if w.reason != "" && e.lastReason() != w.reason {
						t.Errorf("trusted=%v %s: reason %q, want %q", trusted, tt.name, e.lastReason(), w.reason)
					}
				}
			}
		})
	}
}

// TestMTLSProxyEnvoyLastElement takes the element the proxy next to us
// appended, never an earlier one a client may have written.
func TestMTLSProxyEnvoyLastElement(t *testing.T) {
	e := newMTLSEnv(t, func(o *MTLSOptions) {
		o.ProxyHeader, o.TrustedProxies = "x-forwarded-client-cert", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	now := e.clock.Now()
	forged := e.clientCA.issue(t, "admin", now, nil)
	real := e.clientCA.issue(t, "real-client", now, nil)
	srv := httptest.NewServer(Require(&RequireOptions{Events: e.events}, e.m)(whoamiHandler))
	defer srv.Close()
	v := `Cert="` + escapedPEM(forged.certPEM) + `",By=x;Cert="` + escapedPEM(real.certPEM) + `"`
	status, p, err := get(t, srv.Client(), srv.URL, "X-Forwarded-Client-Cert", v)
	if err != nil || status != 200 || p.Subject != "real-client" {
		t.Fatalf("%d %+v %v", status, p, err)
	}
}

func TestXFCCCert(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" is an error
	}{
		{"cert only", `Cert="abc"`, "abc"},
		{"unquoted", `Hash=1;Cert=abc`, "abc"},
		{"chain preferred", `Cert="leaf";Chain="leafandmore"`, "leafandmore"},
		{"separators inside quotes", `Subject="CN=a,OU=b;c";Cert="x,y;z=w"`, "x,y;z=w"},
		{"escaped quote", `Subject="a\"b,c";Cert="ok"`, "ok"},
		{"last element", `Cert="first",Cert="second"`, "second"},
		{"last element without a cert", `Cert="first",Hash=1`, ""},
		{"case of the key", `cert="v"`, "v"},
		{"unterminated quote", `Cert="abc`, ""},
		{"text after a quote", `Cert="abc"def`, ""},
		{"key without value", `Cert`, ""},
		{"empty", ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := xfccCert(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Errorf("xfccCert(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("xfccCert(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFromProxy(t *testing.T) {
	m := &MTLS{}
	if err := m.setupProxy("X-Client-Cert", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:192.168.0.0/112"), netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("fe80::/10")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3:443", true},
		{"[::ffff:10.1.2.3]:443", true}, // IPv4-mapped: the same address
		{"192.168.7.8:1", true},         // from a mapped prefix
		{"192.169.0.1:1", false},
		{"[2001:db8::1]:80", true},
		{"[2001:db8::2]:80", false},
		{"[fe80::1%eth0]:80", true}, // the zone does not matter
		{"11.0.0.1:1", false},
		{"not an address", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := m.fromProxy(tt.addr); got != tt.want {
			t.Errorf("fromProxy(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestMTLSProxyOwnCertificate: a trusted proxy's own certificate on its
// connection to us is not the client's.
func TestMTLSProxyOwnCertificate(t *testing.T) {
	e := newMTLSEnv(t, func(o *MTLSOptions) {
		o.ProxyHeader, o.TrustedProxies = "X-Client-Cert", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	})
	proxyCert := e.clientCA.issue(t, "proxy", e.clock.Now(), nil)
	r := httptest.NewRequest(http.MethodGet, "/", nil) // RemoteAddr 192.0.2.1
	r.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{proxyCert.cert}}
	r2, err := e.m.connection(r)
	if err != nil {
		t.Fatal(err)
	}
	if r2.TLS == nil || len(r2.TLS.PeerCertificates) != 0 {
		t.Fatalf("the proxy's certificate stayed: %+v", r2.TLS)
	}
	if r.TLS.PeerCertificates == nil {
		t.Fatal("the caller's request was changed")
	}
	for _, req := range []*http.Request{r2, r} { // r: Authenticate called without Require
		if _, err := e.m.Authenticate(req); err != ErrNoCredentials {
			t.Errorf("Authenticate = %v, want ErrNoCredentials", err)
		}
	}
}

// FuzzProxyHeader feeds the header parsers anything: they never panic, and
// what the Envoy parser returns is part of its input.
func FuzzProxyHeader(f *testing.F) {
	f.Add(`By=spiffe://x;Hash=1;Cert="-----BEGIN%20CERTIFICATE-----%0A";Subject="CN=a,b"`)
	f.Add(`Cert="a\"b",Cert=c`)
	f.Add("%ZZ")
	m := &MTLS{proxyHeader: envoyHeader}
	nginx := &MTLS{proxyHeader: "X-Ssl-Client-Cert"}
	f.Fuzz(func(t *testing.T, v string) {
		if got, err := xfccCert(v); err == nil && len(got) > len(v) {
			t.Errorf("xfccCert(%q) = %q: longer than its input", v, got)
		}
		_, _ = m.parseProxyHeader(v)
		_, _ = nginx.parseProxyHeader(v)
	})
}
