package mcpauth

import (
	"net/netip"
	"strings"
)

// The refusals that do not depend on a rule.
var (
	errUnauthenticated = &refusal{class: ErrNoCredentials, reason: "unauthenticated", msg: "mcpauth: access denied: authentication required"}
	errNoRule          = [numKinds]*refusal{
		{class: ErrForbidden, reason: "no_rule", msg: "mcpauth: access denied: no rule allows this tool"},
		{class: ErrForbidden, reason: "no_rule", msg: "mcpauth: access denied: no rule allows this prompt"},
		{class: ErrForbidden, reason: "no_rule", msg: "mcpauth: access denied: no rule allows this resource"},
	}
)

// errURIForm refuses a resource URI that [abnormalURI] reports.
var errURIForm = &refusal{class: ErrForbidden, reason: "uri_form", msg: "mcpauth: access denied: resource URI not in normal form (write a lower-case scheme and host, no userinfo, no default or empty port, no trailing dot, no dot or empty segments, file:///path for files, and percent-encode only what must be, in upper-case hex)"}

// abnormalURI reports whether uri, up to its query or fragment, is written
// in a form that denotes another URI once parsed and cleaned. Rules match
// URIs as written, but a resource handler that parses its URI (url.Parse,
// then path.Clean or filepath.Join, or an HTTP fetch) reads what it
// denotes: "file:///public/../private/x", "file:///%70rivate/x" or
// "https://INTRANET.example:443/x" would match a rule for file:///public/*
// or a broad one like https://* and read what a rule for
// file:///private/* or https://intranet.example/* denies.
//
// It refuses, rather than normalises, so that the handler gets the URI the
// rule was decided on:
//   - a scheme that is not lower-case RFC 3986 scheme syntax;
//   - in the authority: userinfo, a host with an upper-case letter, a
//     percent-encoding, a byte outside ASCII or one a host cannot hold, an
//     empty label or a trailing dot, an IP literal not in its RFC 5952 text
//     or an IPv4-mapped one, an empty port, a port with a leading zero or
//     the scheme's default port; and for http, https, ws, wss and ftp, a
//     host ending in a number that is not a dotted-decimal IPv4 address
//     (inet_aton and WHATWG URL read 0x7f.1 and 2130706433 as 127.0.0.1),
//     and an empty path ("https://h" is "https://h/");
//   - a file URI not written file:///path (file:/x, file://localhost/x);
//   - anywhere: a backslash, a control character, a dot segment or an empty
//     one ("//" in the path), a percent-encoded unreserved character, slash
//     or backslash, and lower-case hex digits in a percent-encoding.
//
// URIs in normal form, as clients and servers write them, are none of
// these. It does not allocate.
func abnormalURI(uri string) bool {
	// One pass up to the query or fragment: bytes refused anywhere,
	// percent-encodings and dot segments.
	seg, end := 0, len(uri) // where the current segment starts; the cut
scan:
	for i := 0; i < len(uri); i++ {
		c := uri[i]
		if uriPlain[c] {
			continue
		}
		switch c {
		case '?', '#':
			end = i
			break scan
		case '/':
			if s := uri[seg:i]; s == "." || s == ".." {
				return true
			}
			seg = i + 1
		case '%':
			if i+2 >= len(uri) {
				continue
			}
			hi, lo := unhex(uri[i+1]), unhex(uri[i+2])
			if hi < 0 || lo < 0 {
				continue
			}
			if 'a' <= uri[i+1] || 'a' <= uri[i+2] {
				// %2f and %2F are one byte: RFC 3986 §6.2.2.1 writes
				// the upper-case one.
				return true
			}
			switch c := byte(hi<<4 | lo); {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
				c == '-', c == '.', c == '_', c == '~', c == '/', c == '\\':
				return true
			}
		default:
			// A control character or a backslash.
			return true
		}
	}
	if s := uri[seg:end]; s == "." || s == ".." {
		return true
	}
	uri = uri[:end]

	path := uri
	if i := strings.IndexByte(uri, ':'); i > 0 && strings.IndexByte(uri[:i], '/') < 0 {
		scheme := uri[:i]
		for j := 0; j < len(scheme); j++ {
			switch c := scheme[j]; {
			case 'a' <= c && c <= 'z':
			case j > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
			default:
				return true
			}
		}
		path = uri[i+1:]
		if scheme == "file" {
			// file:/x, file://localhost/x and file://host/x name the
			// file that rules write as file:///x (RFC 8089), and
			// handlers mostly ignore the host.
			if !strings.HasPrefix(path, "///") {
				return true
			}
		}
		if rest, ok := strings.CutPrefix(path, "//"); ok {
			authority := rest
			path = ""
			if j := strings.IndexByte(rest, '/'); j >= 0 {
				authority, path = rest[:j], rest[j:]
			}
			if abnormalAuthority(scheme, authority, path) {
				return true
			}
		}
	}
	// An empty segment: path.Clean drops it, and a leading one would be
	// read as an authority.
	return strings.Contains(path, "//")
}

// uriPlain holds the bytes [abnormalURI] need not look at twice: all but
// controls, DEL, '/', '%', '\\', '?' and '#'.
var uriPlain = func() (t [256]bool) {
	for c := ' '; c < 0x100; c++ {
		t[c] = c != 0x7f && !strings.ContainsRune("/%\\?#", c)
	}
	return t
}()

// hostPlain holds the bytes of a registered name in normal form: lower-case
// letters, digits, '-', '.', '_', '~' and RFC 3986 sub-delims.
var hostPlain = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.ContainsRune("-._~!$&'()*+,;=", rune(c))
	}
	return t
}()

// abnormalAuthority reports whether the authority of a URI of scheme, with
// path after it, is not in the one form [abnormalURI] accepts. The forms it
// refuses reach the same host as the normal one under RFC 3986 §6.2.2 and
// §6.2.3 normalisation, or through a resolver or an HTTP client (a
// trailing dot, IDNA mapping of non-ASCII and percent-encoded hosts,
// inet_aton's IPv4 forms).
func abnormalAuthority(scheme, authority, path string) bool {
	if strings.IndexByte(authority, '@') >= 0 {
		// Userinfo: https://anyone@h/ is h to an HTTP client.
		return true
	}
	host, port, hasPort := authority, "", false
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 || !normalIPv6(authority[1:end]) {
			return true
		}
		host = authority[:end+1]
		if rest := authority[end+1:]; rest != "" {
			if rest[0] != ':' {
				return true
			}
			port, hasPort = rest[1:], true
		}
	} else {
		if j := strings.LastIndexByte(authority, ':'); j >= 0 {
			host, port, hasPort = authority[:j], authority[j+1:], true
		}
		if abnormalRegName(host, specialPort(scheme) != "") {
			return true
		}
	}
	if hasPort {
		if port == "" || port[0] == '0' || port == specialPort(scheme) {
			return true
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return true
			}
		}
	}
	// RFC 3986 §6.2.3: for http and its kin an empty path is "/".
	return path == "" && specialPort(scheme) != ""
}

// specialPort is the default port of the schemes whose hosts WHATWG URL
// parses as network hosts, or "" for any other scheme.
func specialPort(scheme string) string {
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	case "ftp":
		return "21"
	}
	return ""
}

// abnormalRegName reports whether host, a registered name, is not written
// in lower-case ASCII letters, digits, '-', '.', '_', '~' and RFC 3986
// sub-delims, with no empty label or trailing dot. For a network host it
// also reports one that ends in a number (WHATWG URL's test for an IPv4
// address) but is not dotted decimal.
func abnormalRegName(host string, network bool) bool {
	if host == "" {
		return false
	}
	if host[0] == '.' || host[len(host)-1] == '.' || strings.Contains(host, "..") {
		return true
	}
	for i := 0; i < len(host); i++ {
		if !hostPlain[host[i]] {
			return true
		}
	}
	if !network {
		return false
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	number := strings.HasPrefix(last, "0x")
	if !number {
		number = true
		for i := 0; i < len(last); i++ {
			if last[i] < '0' || last[i] > '9' {
				number = false
				break
			}
		}
	}
	if !number {
		return false
	}
	// netip refuses leading zeros, hex and fewer than four parts.
	a, err := netip.ParseAddr(host)
	return err != nil || !a.Is4()
}

// normalIPv6 reports whether s, the text of an IP literal, is an IPv6
// address written as RFC 5952 writes it (lower case, zeros compressed,
// no zone), and not an IPv4-mapped one, which reaches the IPv4 address.
func normalIPv6(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', c == ':', c == '.':
		default:
			return false
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() {
		return false
	}
	var buf [48]byte
	return string(a.AppendTo(buf[:0])) == s
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
