package nstest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps named namespaces.
const netnsDir = "/run/netns"

// requiredTools must be installed for any test that uses this package.
var requiredTools = []string{"ip", "nft"}

var (
	nsCounter atomic.Int64 // numbers labs and probes within this process

	probeOnce     sync.Once
	probeSkip     string // why namespaces cannot be made here; "" if they can
	probeFatal    string // a missing tool or other hard failure; "" if none
	sweepOnce     sync.Once
	staleNSRegexp = regexp.MustCompile(`^nlt-([0-9]+)-[0-9]+-[a-z]+$`)
)

// Require skips or fails t unless this process can create named network
// namespaces: it must run as root, be able to unshare a network namespace
// and to create one with `ip netns add`. Where it cannot, t is skipped with
// the reason, or failed if the environment variable CI is non-empty. A
// missing tool (ip, nft) always fails t. NewLab calls Require itself.
func Require(t testing.TB) {
	t.Helper()
	probeOnce.Do(probe)
	if probeFatal != "" {
		t.Fatalf("nstest: %s", probeFatal)
	}
	if probeSkip != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("nstest: namespaces required in CI: %s", probeSkip)
		}
		t.Skipf("nstest: skipping, %s", probeSkip)
	}
}

// probe fills probeSkip and probeFatal.
func probe() {
	if uid := os.Geteuid(); uid != 0 {
		probeSkip = fmt.Sprintf("not root (euid %d): cannot create network namespaces", uid)
		return
	}
	if err := onThrowawayThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) }); err != nil {
		probeSkip = fmt.Sprintf("cannot create a network namespace: unshare(CLONE_NEWNET): %v", err)
		return
	}
	var missing []string
	for _, tool := range requiredTools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		probeFatal = fmt.Sprintf("required tools not found in PATH: %s", strings.Join(missing, ", "))
		return
	}
	name := fmt.Sprintf("nlt-%d-%d-probe", os.Getpid(), nsCounter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		probeSkip = fmt.Sprintf("cannot create a named network namespace: ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
		return
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		probeFatal = fmt.Sprintf("ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
}

// initialNS names the network namespace the process started in
// ("net:[INODE]"), for CheckThreads.
var (
	initialNS    string
	initialNSErr error
)

// init keeps the main goroutine on the main thread for the life of the
// process, so no other goroutine ever runs there. The runtime cannot end the
// main thread: when a goroutine that locked it exits, it only parks it for
// good, still in whatever namespace that goroutine entered, which keeps the
// namespace alive and makes /proc/self/ns/net and /proc/net show it.
func init() {
	runtime.LockOSThread()
	initialNS, initialNSErr = os.Readlink("/proc/thread-self/ns/net")
}

// onThrowawayThread runs fn on a goroutine locked to its OS thread that is
// never unlocked: when the goroutine exits, the Go runtime terminates the
// thread, so whatever fn did to it (setns, unshare) cannot leak into other
// goroutines.
func onThrowawayThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		errc <- fn()
	}()
	return <-errc
}

// Host is one network namespace of a Lab.
type Host struct {
	// Name is the named namespace, usable as `ip netns exec Name ...`.
	Name string

	ns          netns.NsHandle
	nl          *netlink.Handle
	links       []string // link A, link B: see Link
	serverLinks []string // router only: link A, link B towards the server
}

// newHost creates the named namespace nlt-<pid>-<lab>-<role>, opens it and
// prepares its sysctls. It is deleted at t.Cleanup.
func newHost(t testing.TB, lab int64, role string) *Host {
	t.Helper()
	h := &Host{Name: fmt.Sprintf("nlt-%d-%d-%s", os.Getpid(), lab, role), ns: -1}
	if out, err := exec.Command("ip", "netns", "add", h.Name).CombinedOutput(); err != nil {
		t.Fatalf("create namespace %s: ip netns add: %v: %s", h.Name, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if err := h.destroy(); err != nil {
			t.Errorf("clean up namespace %s: %v", h.Name, err)
		}
	})
	ns, err := netns.GetFromName(h.Name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", h.Name, err)
	}
	h.ns = ns
	// NewHandleAt switches the calling thread into the namespace and back;
	// doing it on a throwaway thread keeps that away from shared threads.
	err = onThrowawayThread(func() error {
		var err error
		h.nl, err = netlink.NewHandleAt(ns)
		return err
	})
	if err != nil {
		t.Fatalf("open netlink handle in namespace %s: %v", h.Name, err)
	}
	sysctls := []struct{ key, value string }{
		{"net/ipv6/conf/all/accept_dad", "0"},
		{"net/ipv6/conf/default/accept_dad", "0"},
		{"net/ipv4/conf/all/rp_filter", "0"},
		{"net/ipv4/conf/default/rp_filter", "0"},
		// No ICMP rate limits: IPv4 would answer only the first 6 rejects
		// per destination, then about one per second, and the rest would
		// look like drops. "\n" clears the IPv6 bitmap.
		{"net/ipv4/icmp_ratemask", "0"},
		{"net/ipv6/icmp/ratemask", "\n"},
	}
	for _, s := range sysctls {
		h.mustSysctl(t, s.key, s.value)
	}
	lo, err := h.nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("%s: find lo: %v", h.Name, err)
	}
	if err := h.nl.LinkSetUp(lo); err != nil {
		t.Fatalf("%s: set lo up: %v", h.Name, err)
	}
	return h
}

// destroy closes the handles and deletes the named namespace.
func (h *Host) destroy() error {
	if h.nl != nil {
		h.nl.Close()
		h.nl = nil
	}
	var errs []error
	if h.ns.IsOpen() {
		if err := h.ns.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close namespace fd: %w", err))
		}
	}
	if out, err := exec.Command("ip", "netns", "del", h.Name).CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("ip netns del: %w: %s", err, bytes.TrimSpace(out)))
	}
	return errors.Join(errs...)
}

// mustSysctl writes a sysctl (key relative to /proc/sys) inside the namespace.
func (h *Host) mustSysctl(t testing.TB, key, value string) {
	t.Helper()
	err := h.InNS(func() error {
		// /proc/sys/net shows the namespace of the thread that opens it.
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
	if err != nil {
		t.Fatalf("%s: sysctl %s=%s: %v", h.Name, strings.ReplaceAll(key, "/", "."), value, err)
	}
}

// NsFd returns a file descriptor of the namespace, for APIs that take one
// (nftables.WithNetNSFd, netlink.Config.NetNS). It stays open until the
// namespace is cleaned up; do not close it.
func (h *Host) NsFd() int { return int(h.ns) }

// Netlink returns a netlink handle bound to the namespace. It is closed at
// cleanup; do not close it.
func (h *Host) Netlink() *netlink.Handle { return h.nl }

// Link returns the name of this host's i-th link (0 = link A, 1 = link B)
// facing its peer: for the client and the server the link to the other side
// (or to the router), for the router the link facing the client. It panics
// if the lab has no such link.
func (h *Host) Link(i int) string {
	if i < 0 || i >= len(h.links) {
		panic(fmt.Sprintf("nstest: %s has no link %d (link B needs Options.SecondLink)", h.Name, i))
	}
	return h.links[i]
}

// ServerLink returns the name of the router's i-th link (0 = link A, 1 =
// link B) facing the server. It panics if h is not a router or the lab has no
// such link.
func (h *Host) ServerLink(i int) string {
	if i < 0 || i >= len(h.serverLinks) {
		panic(fmt.Sprintf("nstest: %s has no server-facing link %d (only the router has them; link B needs Options.SecondLink)", h.Name, i))
	}
	return h.serverLinks[i]
}

// InNS runs fn on a fresh OS thread inside the namespace and returns its
// error. The thread is discarded afterwards, so fn may create sockets (which
// keep the namespace) but must not expect goroutines it starts to be in it.
func (h *Host) InNS(fn func() error) error {
	var fnErr error
	err := onThrowawayThread(func() error {
		if err := netns.Set(h.ns); err != nil {
			return fmt.Errorf("enter namespace %s: %w", h.Name, err)
		}
		fnErr = fn()
		return nil
	})
	if err != nil {
		return err
	}
	return fnErr
}

// command returns `ip netns exec h.Name name args...`, failing t if name
// cannot be found (ip would report that only as exit status 255).
func (h *Host) command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s: run %s: %v", h.Name, name, err)
	}
	return exec.Command("ip", append([]string{"netns", "exec", h.Name, path}, args...)...)
}

// Exec runs name with args inside the namespace (`ip netns exec`), waits for
// it and returns its output and exit code. The exit code is -1 if the
// process was killed by a signal; if the command could not be started at
// all, Exec fails t (so call it from the test's goroutine).
func (h *Host) Exec(t testing.TB, name string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	return h.run(t, nil, name, args...)
}

// MustExec is Exec that fails t on a non-zero exit code, quoting stderr. It
// returns stdout.
func (h *Host) MustExec(t testing.TB, name string, args ...string) string {
	t.Helper()
	stdout, stderr, code := h.Exec(t, name, args...)
	if code != 0 {
		t.Fatalf("%s: %s %s: exit code %d: %s", h.Name, name, strings.Join(args, " "), code, strings.TrimSpace(stderr))
	}
	return stdout
}

// Nft loads script into the namespace's ruleset with `nft -f -`, failing t
// if nft rejects it.
func (h *Host) Nft(t testing.TB, script string) {
	t.Helper()
	_, stderr, code := h.run(t, strings.NewReader(script), "nft", "-f", "-")
	if code != 0 {
		t.Fatalf("%s: nft -f: exit code %d: %s\nscript:\n%s", h.Name, code, strings.TrimSpace(stderr), script)
	}
}

func (h *Host) run(t testing.TB, stdin *strings.Reader, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := h.command(t, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = stdin
	}
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exitErr):
		return stdout.String(), stderr.String(), exitErr.ExitCode()
	default:
		t.Fatalf("%s: run %s: %v", h.Name, cmd, err)
		return stdout.String(), stderr.String(), -1
	}
}

// sweepStale deletes namespaces named by this package for a process that no
// longer exists (a test binary that crashed or timed out before cleanup).
func sweepStale(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			t.Logf("nstest: list %s: %v", netnsDir, err)
		}
		return
	}
	for _, e := range entries {
		m := staleNSRegexp.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || processExists(pid) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("nstest: delete stale namespace %s: %v: %s", e.Name(), err, bytes.TrimSpace(out))
			continue
		}
		t.Logf("nstest: deleted stale namespace %s (process %d is gone)", e.Name(), pid)
	}
}

// processExists reports whether a process with this pid exists.
func processExists(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}
