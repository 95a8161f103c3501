package mcpauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
)

func TestCertIdentity(t *testing.T) {
	u := func(s string) *url.URL { v, _ := url.Parse(s); return v }
	tests := []struct {
		name, kind string
		cert       *x509.Certificate
		want       string // "" refuses
	}{
		{"spiffe", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://td.example/a/b")}}, "spiffe://td.example/a/b"},
		{"spiffe trust domain only", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://td.example")}}, "spiffe://td.example"},
		{"spiffe upper-case trust domain", "spiffe", &x509.Certificate{URIs: []*url.URL{u("SPIFFE://TD.example/a")}}, "spiffe://td.example/a"},
		{"spiffe two URIs", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://td/a"), u("spiffe://td/b")}}, ""},
		{"spiffe trailing slash", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://td/a/")}}, ""},
		{"spiffe dot segment", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://td/a/../b")}}, ""},
		{"spiffe empty segment", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://td//b")}}, ""},
		{"spiffe port", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://td:8080/a")}}, ""},
		{"spiffe user", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://u@td/a")}}, ""},
		{"spiffe query", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://td/a?x=1")}}, ""},
		{"spiffe percent-encoded", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe://td/a%2Fb")}}, ""},
		{"spiffe other scheme", "spiffe", &x509.Certificate{URIs: []*url.URL{u("https://td/a")}}, ""},
		{"spiffe no trust domain", "spiffe", &x509.Certificate{URIs: []*url.URL{u("spiffe:///a")}}, ""},
		{"dns", "dns", &x509.Certificate{DNSNames: []string{"Api.Example.COM."}}, "api.example.com"},
		{"dns wildcard", "dns", &x509.Certificate{DNSNames: []string{"*.example.com"}}, ""},
		{"dns two", "dns", &x509.Certificate{DNSNames: []string{"a.example", "b.example"}}, ""},
		{"email", "email", &x509.Certificate{EmailAddresses: []string{"Bob@EXAMPLE.com"}}, "Bob@example.com"},
		{"email no domain", "email", &x509.Certificate{EmailAddresses: []string{"bob@"}}, ""},
		{"cn", "cn", &x509.Certificate{Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: "svc"}}}}, "svc"},
		{"two cn", "cn", &x509.Certificate{Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: "a"}, {Type: oidCommonName, Value: "b"}}}}, ""},
		{"cn control character", "cn", &x509.Certificate{Subject: pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: "a\nb"}}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := certIdentity(tt.kind, tt.cert)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("certIdentity = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}
