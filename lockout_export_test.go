package mcpauth

import (
	"context"
	"testing"
	"time"
)

// TestClock is a clock the tests of package mcpauth_test move.
type TestClock = testClock

// NewTestClock returns a clock at a fixed time.
var NewTestClock = newTestClock

// Now and Advance read and move the clock.
func (c *testClock) Now() time.Time          { return c.now() }
func (c *testClock) Advance(d time.Duration) { c.advance(d) }

// NewLockoutClock is NewLockout with a clock, closed when t ends.
func NewLockoutClock(t testing.TB, opts *LockoutOptions, now func() time.Time) *Lockout {
	t.Helper()
	l, err := newLockout(opts, now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// SyncLockout shares l's state through its store now.
func SyncLockout(ctx context.Context, l *Lockout) error { return l.sync(ctx) }

// LockoutEntries is how many entries l holds.
func LockoutEntries(l *Lockout) int64 { return l.size.Load() }
