package mcpauth_test

import (
	"flag"
	"log/slog"
	"os"
	"testing"

	"github.com/mcpauth/mcpauth/internal/audittap"
)

// TestMain silences the audit log, which goes to slog.Default when no
// Logger is set, unless the tests run with -v; and fails the run if any
// event of any test held a credential that any test presented
// (internal/audittap).
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		slog.SetDefault(slog.New(slog.DiscardHandler))
	}
	os.Exit(audittap.Run(m.Run, testing.Verbose()))
}
