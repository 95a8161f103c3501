package mcpauth

import (
	"net/netip"
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzAbnormalURI: a file URI the guard accepts reads, once parsed and
// cleaned as a file server would, a path under every directory prefix that
// it matches as written: a rule for file:///dir/* covers what it reads.
func FuzzAbnormalURI(f *testing.F) {
	for _, s := range []string{"file:///public/a", "file:///public/../private/b", "file:///%70rivate/b",
		"file:////private/b", "file://localhost/private/b", "file:///a/./b", "file:///a%2fb", "file:///a%20b/c?x=../y", "file:///a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		if abnormalURI(uri) || !strings.HasPrefix(uri, "file:///") {
			return
		}
		u, err := url.Parse(uri)
		if err != nil || u.Opaque != "" {
			return
		}
		if u.Host != "" {
			t.Fatalf("%q: accepted with host %q", uri, u.Host)
		}
		read := path.Clean(u.Path)
		if !strings.HasSuffix(read, "/") {
			read += "/"
		}
		raw := strings.TrimPrefix(uri, "file://")
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i]
		}
		for i := range len(raw) {
			if raw[i] != '/' {
				continue
			}
			dir, err := url.PathUnescape(raw[:i+1])
			if err != nil {
				return
			}
			if !strings.HasPrefix(read, dir) {
				t.Fatalf("%q: matches file://%s* as written but reads %s", uri, raw[:i+1], read)
			}
		}
	})
}

// FuzzAbnormalURIHost: an http(s) URI the guard accepts names its host in
// the one form an HTTP client reaches it by: url.Parse finds no userinfo,
// the authority as written, a host that case folding, dropping a trailing
// dot, and writing its IP address in RFC 5952 text leave unchanged, and no
// default or empty port.
func FuzzAbnormalURIHost(f *testing.F) {
	for _, s := range []string{"https://intranet.example/x", "https://INTRANET.example/x", "https://h:443/", "http://h:80/",
		"https://anyone@h/", "https://h./", "https://h:/", "https://[::FFFF:a00:5]/", "https://[2001:db8::1]:8443/x",
		"https://10.0.0.5/", "https://0x7f.1/", "https://%EF%BD%89ntranet.example/x", "https://h/?q=@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		if abnormalURI(uri) || !(strings.HasPrefix(uri, "https://") || strings.HasPrefix(uri, "http://")) {
			return
		}
		u, err := url.Parse(uri)
		if err != nil {
			return
		}
		raw := uri[strings.Index(uri, "//")+2:]
		if i := strings.IndexAny(raw, "/?#"); i >= 0 {
			raw = raw[:i]
		}
		if u.User != nil || u.Host != raw {
			t.Fatalf("%q: accepted with userinfo %v, host %q (written %q)", uri, u.User, u.Host, raw)
		}
		host := u.Hostname()
		norm := strings.TrimSuffix(strings.ToLower(host), ".")
		if a, err := netip.ParseAddr(norm); err == nil {
			norm = a.Unmap().String()
		}
		if norm != host {
			t.Fatalf("%q: accepted host %q, which denotes %q", uri, host, norm)
		}
		if p := u.Port(); strings.HasSuffix(u.Host, ":") || p == "443" && u.Scheme == "https" || p == "80" && u.Scheme == "http" {
			t.Fatalf("%q: accepted port %q", uri, p)
		}
		if u.Path == "" {
			t.Fatalf("%q: accepted with an empty path", uri)
		}
	})
}

// FuzzParsePolicy: ParsePolicy never panics, and its errors are in the
// policy's words: they start with "mcpauth: policy" and name no Go type,
// which would mean a decoder refused what the checks let through.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"roles: {user: []}\nrules:\n  - {tool: x, roles: [user]}\n",
		"rules:\n  - tool: x\n    role: [user]\n",
		"roles: &r {a: [], b: [a]}\nrules:\n  - &x {tool: x, roles: [a]}\n  - {<<: *x, tool: y}\n",
		"rules: [{tool: x, any_caller: true, rate_limit: 1/h}]\n",
		`{"roles": {"user": []}, "rules": [{"tool": "x", "roles": ["user"], "scopes": ["a"], "any_caller": null}]}`,
		`{"rules": [{"tool": "x", "ROLES": ["a"], "roles": []}]}`,
		`{"rules": [{"tool": 5}]}`,
		"{\"rules\": [\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParsePolicy(data)
		if err == nil {
			return
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "mcpauth: policy") {
			t.Fatalf("%q: %q", data, msg)
		}
		for _, goWords := range []string{"mcpauth.Rule", "mcpauth.Policy", "Go struct", "Go value", "[]string", "map[string]", "unmarshal"} {
			if strings.Contains(msg, goWords) {
				t.Fatalf("%q: %q says %q", data, msg, goWords)
			}
		}
	})
}
