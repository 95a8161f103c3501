package mcpauth_test

import (
	"flag"
	"log/slog"
	"os"
	"testing"
)

// TestMain silences the audit log, which goes to slog.Default when no
// Logger is set, unless the tests run with -v.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		slog.SetDefault(slog.New(slog.DiscardHandler))
	}
	os.Exit(m.Run())
}
