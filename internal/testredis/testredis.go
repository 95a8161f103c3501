// Package testredis starts a throwaway redis-server for a test: on a free
// loopback port, with no persistence, killed when the test ends. Tests of
// every package that needs Redis use it, so that `go test ./...` needs no
// Redis set up beforehand and never touches one that is.
//
// When redis-server is not on PATH, Start skips the test with the command
// that installs it; with MCPAUTH_INTEGRATION=require (set by CI) it fails
// the test instead.
package testredis

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// A Server is one redis-server process. Its port stays the same across
// Stop and Start, so that a client made before a Stop finds it again.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	log  *lockedWriter // the running server's output
	done chan struct{} // closed when cmd has exited
}

// Start starts a redis-server on a free port of 127.0.0.1 and waits until
// it answers PING. The server is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server is not installed (Debian: apt-get install -y redis-server)"
		if os.Getenv("MCPAUTH_INTEGRATION") == "require" {
			t.Fatal(msg + "; MCPAUTH_INTEGRATION=require")
		}
		t.Skip(msg)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.kill)
	// A port found free can be taken before redis-server binds it; then
	// try another.
	var last error
	for range 5 {
		if s.port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if last = s.start(); last == nil {
			return s
		}
		s.kill()
	}
	t.Fatalf("testredis: %v", last)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Stop kills the server and waits until it has exited. Its data is lost.
func (s *Server) Stop() {
	s.t.Helper()
	s.kill()
}

// Restart starts a fresh, empty server on the same port, after a Stop.
func (s *Server) Restart() {
	s.t.Helper()
	s.kill()
	// The port was ours a moment ago, but a restart races with anything
	// that binds free ports, so a bounded number of attempts.
	var err error
	for range 20 {
		if err = s.start(); err == nil {
			return
		}
		s.kill()
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("testredis: restart on port %d: %v", s.port, err)
}

// Pause freezes the server (SIGSTOP): connections open and commands are
// read by the kernel, but nothing is answered, as from an overloaded or
// partitioned server. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatal("testredis: server not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("testredis: %v: %v", sig, err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
	)
	log := &lockedWriter{w: new(bytes.Buffer)}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	s.cmd, s.log, s.done = cmd, log, done
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		if err := ping(s.Addr()); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited: %s", lastLines(log))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %s",
				s.port, startTimeout, lastLines(log))
		}
	}
}

// kill kills the process, if any, and waits for it to exit.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill() // SIGKILL ends a paused process too
	<-done
}

// ping sends one RESP PING and wants +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// lastLines is the end of the server's log, for an error message.
func lastLines(w *lockedWriter) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.w.Bytes()
	if len(b) > 1000 {
		b = b[len(b)-1000:]
	}
	return strings.TrimSpace(string(b))
}
