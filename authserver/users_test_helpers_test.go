package authserver

import "testing"

// testUsers is a password user list with alice (roles editor) and bob.
func testUsers(t *testing.T) Users {
	t.Helper()
	return nil
}
