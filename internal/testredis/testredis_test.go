package testredis

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	if err := ping(addr); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	s.Stop()
	if err := ping(addr); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	if err := ping(addr); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
}

func TestPauseResume(t *testing.T) {
	s := Start(t)
	s.Pause()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("a paused server answered PING")
	}
	s.Resume()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

// TestMissingServer checks what a machine without redis-server sees: a
// skip that says how to install it, or under MCPAUTH_INTEGRATION=require a
// failure.
func TestMissingServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, tt := range []struct {
		integration string
		want        string
	}{
		{"", "skip"},
		{"require", "fatal"},
	} {
		t.Setenv("MCPAUTH_INTEGRATION", tt.integration)
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() { defer close(done); Start(r) }()
		<-done
		if r.how != tt.want || !strings.Contains(r.msg, "apt-get install -y redis-server") {
			t.Errorf("MCPAUTH_INTEGRATION=%q: %s %q, want %s with the install command",
				tt.integration, r.how, r.msg, tt.want)
		}
	}
}

// recorder is a testing.TB whose Skip and Fatal end the goroutine and
// record how, instead of ending the test.
type recorder struct {
	testing.TB
	how, msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Skip(args ...any) {
	r.how, r.msg = "skip", strings.TrimSpace(fmt.Sprintln(args...))
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) {
	r.how, r.msg = "fatal", strings.TrimSpace(fmt.Sprintln(args...))
	runtime.Goexit()
}
