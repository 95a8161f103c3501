package mcpauth

import (
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
