package bolt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/store/storetest"
)

func openTemp(t *testing.T, opts *Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "mcpauth.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) mcpauth.Store { return openTemp(t, nil) })
}

// TestContractSweeping runs the contract with the sweeper running flat
// out, so that a sweep racing with writes is covered too.
func TestContractSweeping(t *testing.T) {
	storetest.Run(t, func(t *testing.T) mcpauth.Store {
		return openTemp(t, &Options{SweepInterval: time.Millisecond})
	})
}

// clock is a settable time for the tests that reopen a file.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// TestRestart closes and reopens the file: values, counters and deadlines
// are what they were.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mcpauth.db")
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	reopen := func() *Store {
		t.Helper()
		s, err := open(path, &Options{SweepInterval: time.Hour}, c.now, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	s := reopen()
	for _, e := range []struct {
		key string
		ttl time.Duration
	}{{"k:forever", 0}, {"k:hour", time.Hour}, {"k:minute", time.Minute}} {
		if err := s.Set(ctx, e.key, []byte("v-"+e.key), e.ttl); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := s.Incr(ctx, "n:count", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "k:forever"); err == nil {
		t.Error("Get after Close succeeded")
	}

	c.add(30 * time.Minute)
	s = reopen()
	want := map[string]string{"k:forever": "v-k:forever", "k:hour": "v-k:hour", "n:count": "3"}
	for k, v := range want {
		if got, err := s.Get(ctx, k); err != nil || string(got) != v {
			t.Errorf("after reopening, %s = %q, %v; want %q", k, got, err, v)
		}
	}
	if _, err := s.Get(ctx, "k:minute"); !errors.Is(err, mcpauth.ErrNotFound) {
		t.Errorf("k:minute, 30 minutes on: %v, want ErrNotFound", err)
	}
	if n, err := s.Incr(ctx, "n:count", 0); err != nil || n != 4 {
		t.Errorf("Incr after reopening = %d, %v; want 4", n, err)
	}
	must(t, s.Close())

	c.add(time.Hour) // past k:hour's and n:count's deadline, kept through the Incr
	s = reopen()
	defer s.Close()
	for _, k := range []string{"k:hour", "n:count"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, mcpauth.ErrNotFound) {
			t.Errorf("%s after its deadline: %v, want ErrNotFound", k, err)
		}
	}
	if _, err := s.Get(ctx, "k:forever"); err != nil {
		t.Errorf("k:forever: %v", err)
	}
}

// TestLockedFile opens a file that another Store holds: the second Open
// fails, with an error that says why, instead of waiting for ever.
func TestLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mcpauth.db")
	first, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	done := make(chan error, 1)
	go func() {
		s, err := Open(path, &Options{LockTimeout: 100 * time.Millisecond})
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "in use by another process") || !strings.HasPrefix(err.Error(), "mcpauth: bolt: ") {
			t.Fatalf("second Open: %v, want an error saying the file is in use", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second Open of a locked file still waiting after 10 s")
	}

	// Once the first lets go, the file opens.
	must(t, first.Close())
	second, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	must(t, second.Close())
}

// TestLockedFileOtherProcess is TestLockedFile with the holder in another
// process, and the default timeout.
func TestLockedFileOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mcpauth.db")
	child, lines := helper(t, "hold", path)
	if l := <-lines; l != "open" {
		t.Fatalf("child: %q", l)
	}
	done := make(chan error, 1)
	go func() {
		s, err := Open(path, nil)
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "in use by another process") {
			t.Errorf("Open of a file another process holds: %v, want an error saying the file is in use", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open of a file another process holds still waiting after 10 s")
	}
	_ = child.Process.Kill()
}

// TestKill9 writes entries from a child process, kills it with SIGKILL in
// the middle of writing, and finds every entry whose Set had returned.
func TestKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mcpauth.db")
	child, lines := helper(t, "write", path)
	var acked []string
	for l := range lines {
		acked = append(acked, l)
		if len(acked) == 200 {
			if err := child.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	for l := range lines { // what the child wrote before it died
		acked = append(acked, l)
	}
	err := child.Wait()
	if ws, ok := child.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}
	if len(acked) < 200 {
		t.Fatalf("child acknowledged only %d writes", len(acked))
	}

	s, err := Open(path, nil)
	if err != nil {
		t.Fatalf("reopening after kill -9: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, k := range acked {
		got, err := s.Get(ctx, k)
		if err != nil || string(got) != "value of "+k {
			t.Fatalf("%s, acknowledged before the kill: %q, %v", k, got, err)
		}
	}
	must(t, s.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("file inconsistent after kill -9: %v", err)
		}
		return nil
	}))
}

// helper runs TestHelperProcess in a child process with the given role
// and file, and returns the lines it prints.
func helper(t *testing.T, role, path string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MCPAUTH_BOLT_HELPER="+role, "MCPAUTH_BOLT_PATH="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "helper: "); ok {
				lines <- l
			}
		}
	}()
	return cmd, lines
}

// TestHelperProcess is the child of TestKill9 and TestLockedFileOtherProcess;
// run directly, it does nothing.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv("MCPAUTH_BOLT_HELPER")
	if role == "" {
		t.Skip("the child process of other tests")
	}
	s, err := Open(os.Getenv("MCPAUTH_BOLT_PATH"), nil)
	if err != nil {
		fmt.Println("helper: open failed:", err)
		os.Exit(1)
	}
	switch role {
	case "hold":
		fmt.Println("helper: open")
		time.Sleep(time.Minute) // until killed
	case "write":
		ctx := context.Background()
		for i := 0; ; i++ {
			k := fmt.Sprintf("k:%06d", i)
			ttl := time.Duration(i%2) * time.Hour // half with a deadline
			if err := s.Set(ctx, k, []byte("value of "+k), ttl); err != nil {
				fmt.Println("helper: Set failed:", err)
				os.Exit(1)
			}
			fmt.Println("helper: " + k)
		}
	}
	os.Exit(0)
}

// TestSweeper writes entries that expire and are never read again: the
// sweeper deletes them from the file, in transactions of at most
// sweepBatch entries, and leaves live entries alone.
func TestSweeper(t *testing.T) {
	ctx := context.Background()
	var (
		mu      sync.Mutex
		batches []int
	)
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	s, err := open(filepath.Join(t.TempDir(), "mcpauth.db"), &Options{SweepInterval: 5 * time.Millisecond}, c.now,
		func(n int) {
			mu.Lock()
			batches = append(batches, n)
			mu.Unlock()
		})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	const expiring = 3*sweepBatch + 10
	// Many entries per transaction, so that the test takes no
	// thousand fsyncs.
	err = s.db.Update(func(btx *bbolt.Tx) error {
		tx := s.buckets(btx)
		for i := range expiring {
			if err := tx.put(fmt.Appendf(nil, "e:%d", i), []byte("x"), c.now().Add(time.Minute).UnixNano()); err != nil {
				return err
			}
		}
		return nil
	})
	must(t, err)
	must(t, s.Set(ctx, "k:live", []byte("x"), time.Hour))
	must(t, s.Set(ctx, "k:forever", []byte("x"), 0))
	if n := s.count(t); n != expiring+2 {
		t.Fatalf("%d entries before expiry", n)
	}

	c.add(2 * time.Minute)
	// The hook runs after its transaction commits, so the file can hold
	// 2 entries a moment before the last batch is reported: wait for both.
	swept := func() (total, over int) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range batches {
			if n > sweepBatch {
				over = n
			}
			total += n
		}
		return total, over
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		total, _ := swept()
		if s.count(t) == 2 && total >= expiring {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries and %d reported swept 10 s after %d expired", s.count(t), total, expiring)
		}
		time.Sleep(10 * time.Millisecond)
	}
	total, over := swept()
	if over > 0 {
		t.Errorf("one sweep deleted %d entries, more than %d", over, sweepBatch)
	}
	if total != expiring {
		t.Errorf("sweeps deleted %d entries, want %d", total, expiring)
	}
	for _, k := range []string{"k:live", "k:forever"} {
		if _, err := s.Get(ctx, k); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	var index int
	must(t, s.db.View(func(btx *bbolt.Tx) error { index = btx.Bucket(expiryBucket).Stats().KeyN; return nil }))
	if index != 1 {
		t.Errorf("expiry index holds %d entries, want 1 (k:live)", index)
	}
}

// TestSweeperIdle: a sweep that finds nothing expired writes nothing, so an
// idle store costs no fsync per SweepInterval.
func TestSweeperIdle(t *testing.T) {
	sweeps := make(chan int, 100)
	s, err := open(filepath.Join(t.TempDir(), "mcpauth.db"), &Options{SweepInterval: time.Millisecond}, time.Now,
		func(n int) {
			select {
			case sweeps <- n:
			default:
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must(t, s.Set(context.Background(), "k:live", []byte("x"), time.Hour))
	txid := func() (id int) {
		must(t, s.db.View(func(btx *bbolt.Tx) error { id = btx.ID(); return nil }))
		return id
	}
	before := txid()
	for range 5 {
		select {
		case <-sweeps:
		case <-time.After(10 * time.Second):
			t.Fatal("no sweep within 10 s")
		}
	}
	if after := txid(); after != before {
		t.Errorf("5 sweeps with nothing expired committed %d transactions", after-before)
	}
}

// count is the number of entries in the file, live or not.
func (s *Store) count(t *testing.T) (n int) {
	t.Helper()
	must(t, s.db.View(func(btx *bbolt.Tx) error { n = btx.Bucket(dataBucket).Stats().KeyN; return nil }))
	return n
}

// TestSweeperStopsOnClose: Close returns with the sweeper stopped, and a
// later sweep would fail on a closed file.
func TestSweeperStopsOnClose(t *testing.T) {
	s := openTemp(t, &Options{SweepInterval: time.Millisecond})
	time.Sleep(20 * time.Millisecond)
	must(t, s.Close())
	select {
	case <-s.stopped:
	default:
		t.Fatal("Close returned with the sweeper running")
	}
	must(t, s.Close()) // twice is fine
}

// TestOverwriteMovesDeadline: an entry rewritten with a later deadline or
// none is not swept at its old deadline.
func TestOverwriteMovesDeadline(t *testing.T) {
	ctx := context.Background()
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	s, err := open(filepath.Join(t.TempDir(), "mcpauth.db"), &Options{SweepInterval: time.Hour}, c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must(t, s.Set(ctx, "k:later", []byte("1"), time.Minute))
	must(t, s.Set(ctx, "k:later", []byte("2"), time.Hour))
	must(t, s.Set(ctx, "k:never", []byte("1"), time.Minute))
	must(t, s.Set(ctx, "k:never", []byte("2"), 0))
	var index int
	must(t, s.db.View(func(btx *bbolt.Tx) error { index = btx.Bucket(expiryBucket).Stats().KeyN; return nil }))
	if index != 1 {
		t.Errorf("expiry index holds %d entries, want 1 (k:later's new deadline)", index)
	}
	c.add(2 * time.Minute)
	if _, err := s.sweepOnce(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k:later", "k:never"} {
		if got, err := s.Get(ctx, k); err != nil || string(got) != "2" {
			t.Errorf("%s = %q, %v; want 2", k, got, err)
		}
	}
}

// TestErrorsCarryNoValue: a failing Incr names neither the value nor
// anything else the caller stored.
func TestErrorsCarryNoValue(t *testing.T) {
	s := openTemp(t, nil)
	ctx := context.Background()
	must(t, s.Set(ctx, "n:secret", []byte("hunter2-secret"), 0))
	_, err := s.Incr(ctx, "n:secret", 0)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.HasPrefix(err.Error(), "mcpauth: bolt: ") {
		t.Errorf("Incr of text: %v", err)
	}
	for _, key := range []string{"", strings.Repeat("k", bbolt.MaxKeySize+1)} {
		if err := s.Set(ctx, key, []byte("x"), 0); err == nil {
			t.Errorf("Set of a %d-byte key succeeded", len(key))
		}
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{LockTimeout: -1}, {SweepInterval: -1}} {
		if s, err := Open(filepath.Join(t.TempDir(), "x.db"), &o); err == nil {
			s.Close()
			t.Errorf("Open with %+v succeeded", o)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "dir", "x.db"), nil); err == nil ||
		!strings.HasPrefix(err.Error(), "mcpauth: bolt: ") {
		t.Errorf("Open in a missing directory: %v", err)
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mcpauth.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		t.Errorf("file mode %v, want no access for group and others", m)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
