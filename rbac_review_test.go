package mcpauth_test

import (
	"testing"

	"github.com/mcpauth/mcpauth"
)

// This file holds the regression tests of the adversarial review of the
// guard: each test failed before the fix committed with it.

// TestReviewPolicyYAMLOneDocument: a YAML policy is one document. A second
// one used to be ignored without a word, and with it any rule it held: a
// narrower exact rule ignored leaves a broader prefix rule to allow what it
// was written to deny.
func TestReviewPolicyYAMLOneDocument(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"one document", "roles: {user: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n", true},
		{"one document with start marker", "---\nroles: {user: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n", true},
		{"one document with end marker", "roles: {user: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n...\n", true},
		{"two documents", "roles: {user: [], admin: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n---\nrules:\n  - {tool: db.drop, roles: [admin]}\n", false},
		{"empty second document", "roles: {user: []}\nrules:\n  - {tool: 'db.*', roles: [user]}\n---\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mcpauth.ParsePolicy([]byte(tc.text))
			if (err == nil) != tc.ok {
				t.Errorf("ParsePolicy: %v, want ok %v", err, tc.ok)
			}
		})
	}
}
