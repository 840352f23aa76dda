package nstest

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stopGrace is how long Stop and cleanup wait after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// Process is a command started in a namespace by Host.Start.
type Process struct {
	// Cmd is the running `ip netns exec NAME ...` command; ip execs the
	// program in place, so Cmd.Process is the program itself.
	Cmd *exec.Cmd

	stdout, stderr syncBuffer
	done           chan struct{} // closed when Wait returned
	err            error         // Wait's result, valid after done
}

// Start starts name with args inside the namespace (`ip netns exec`) and
// returns at once. The process runs in its own process group. At cleanup it
// is stopped like Stop does, and its output is logged if the test failed.
func (h *Host) Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: h.command(t, name, args...), done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = &p.stdout, &p.stderr
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("%s: start %s: %v", h.Name, p.Cmd, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil && !isSignalExit(err) {
			t.Logf("%s: %s: %v", h.Name, name, err)
		}
		if t.Failed() {
			t.Logf("%s: %s stdout:\n%s\n%s stderr:\n%s", h.Name, name, p.Stdout(), name, p.Stderr())
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error (nil for exit code 0); call it only
// after Done is closed.
func (p *Process) Err() error { return p.err }

// Stdout returns what the process wrote to stdout so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr returns what the process wrote to stderr so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %v to %s: %w", sig, p.Cmd, err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to 5 s, then kills the process group with
// SIGKILL, and returns the exit error (nil for exit code 0). It may be called
// more than once.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not exit %v after SIGTERM, killed: %w", p.Cmd, stopGrace, p.err)
}

// isSignalExit reports whether err says the process was ended by SIGTERM.
func isSignalExit(err error) bool {
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return false
	}
	ws, ok := exitErr.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
