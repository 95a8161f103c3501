package audittap

import (
	"strings"
	"testing"
)

func TestLeaks(t *testing.T) {
	Enable()
	Secret("short")                                       // too short to check
	Secret("mcpk_0123456789abcdefghijklmnopqrstuvwxyzAB") // presented
	JSON([]byte(`{"access_token":"eyJhbGciOi.payload.sig-of-the-token","token_type":"Bearer","expires_in":300}`))
	Event("{Kind:authentication Subject:alice KeyID:8d5a2a8ea0d6 Detail:short}")
	Event("{Kind:authentication Detail:key mcpk_0123456789abcdefghijklmnopqrstuvwxyzAB}")
	Event("{Kind:token_issued Detail:eyJhbGciOi.payload.sig-of-the-token}")
	n, s, leaks := Leaks()
	if n != 3 || s != 2 {
		t.Fatalf("%d events and %d secrets, want 3 and 2", n, s)
	}
	if len(leaks) != 2 || !strings.Contains(leaks[0]+leaks[1], "mcpk…") || !strings.Contains(leaks[0]+leaks[1], "eyJh…") {
		t.Fatalf("leaks %q, want the key's and the token's events", leaks)
	}
}
