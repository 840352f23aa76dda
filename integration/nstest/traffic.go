package nstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Outcome is how a connection attempt ended.
type Outcome int

// Outcomes. The zero value is Failed, so an unset Result never looks Accepted.
const (
	// Failed is any other error, e.g. EADDRNOTAVAIL for a source address the
	// client does not have; see Result.Err.
	Failed Outcome = iota
	// Accepted: the TCP handshake completed, or the UDP echo came back.
	Accepted
	// Refused: ECONNREFUSED, from a TCP RST or an ICMP port-unreachable.
	Refused
	// Unreachable: EHOSTUNREACH, ENETUNREACH, EACCES, EPERM, EHOSTDOWN or
	// ENONET, from an ICMP destination-unreachable such as admin-prohibited
	// (or, for EPERM, a local output filter).
	Unreachable
	// TimedOut: no answer within the timeout (e.g. the packets were dropped).
	TimedOut
)

// String returns the outcome's name in lower case.
func (o Outcome) String() string {
	switch o {
	case Failed:
		return "failed"
	case Accepted:
		return "accepted"
	case Refused:
		return "refused"
	case Unreachable:
		return "unreachable"
	case TimedOut:
		return "timed out"
	default:
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
}

// Result is the result of one connection attempt.
type Result struct {
	// Outcome classifies Err.
	Outcome Outcome
	// Err is nil when Accepted.
	Err error
	// Conn is the connection when Accepted, else nil. The caller may close
	// it; it is also closed at t.Cleanup.
	Conn net.Conn
}

// String returns the outcome and the error, if any.
func (r Result) String() string {
	if r.Err == nil {
		return r.Outcome.String()
	}
	return fmt.Sprintf("%v (%v)", r.Outcome, r.Err)
}

// Count returns how many of rs have outcome o.
func Count(rs []Result, o Outcome) int {
	n := 0
	for _, r := range rs {
		if r.Outcome == o {
			n++
		}
	}
	return n
}

// classify maps a dial or read error to an Outcome.
func classify(err error) Outcome {
	if err == nil {
		return Accepted
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Refused
	}
	for _, errno := range []syscall.Errno{syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EACCES, syscall.EPERM, syscall.EHOSTDOWN, syscall.ENONET} {
		if errors.Is(err, errno) {
			return Unreachable
		}
	}
	var netErr net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ETIMEDOUT) || (errors.As(err, &netErr) && netErr.Timeout()) {
		return TimedOut
	}
	return Failed
}

// network returns "tcp4"/"udp4" or "tcp6"/"udp6" for dst.
func network(proto string, dst netip.Addr) string {
	if dst.Unmap().Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// TCPServer is a TCP server started by Host.ServeTCP.
type TCPServer struct {
	// Port is the port it listens on.
	Port int

	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{} // open connections
}

// ServeTCP listens on [::]:port (IPv4 and IPv6) in the namespace. It accepts
// every connection and holds it open until the client closes it (then it
// closes its side too, so no CLOSE_WAIT lingers) or the test ends. It stops
// at t.Cleanup.
func (h *Host) ServeTCP(t testing.TB, port int) *TCPServer {
	t.Helper()
	s := &TCPServer{Port: port, conns: map[net.Conn]struct{}{}}
	err := h.InNS(func() error {
		var err error
		s.ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("%s: serve TCP: %v", h.Name, err)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.close)
	return s
}

func (s *TCPServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed at cleanup
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// close stops the listener, closes every open connection and waits for the
// server's goroutines.
func (s *TCPServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Accepted returns how many connections the server has accepted so far. A
// client's connect returns before the server's accept, so after dialing use
// WaitAccepted, or expect this to lag a little.
func (s *TCPServer) Accepted() int { return int(s.accepted.Load()) }

// Open returns how many accepted connections are still open.
func (s *TCPServer) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// WaitAccepted waits until the server has accepted at least n connections,
// failing t if that takes longer than timeout.
func (s *TCPServer) WaitAccepted(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for s.Accepted() < n {
		if time.Now().After(deadline) {
			t.Fatalf("TCP server on port %d: accepted %d connections within %v, want at least %d", s.Port, s.Accepted(), timeout, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ServeUDP runs a UDP echo server on [::]:port (IPv4 and IPv6) in the
// namespace until t.Cleanup. Each reply is sent from the address the
// datagram was sent to (IPV6_PKTINFO), so connected client sockets accept it
// even when the server has several addresses.
func (h *Host) ServeUDP(t testing.TB, port int) {
	t.Helper()
	var conn *net.UDPConn
	err := h.InNS(func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified, Port: port})
		if err != nil {
			return err
		}
		raw, err := conn.SyscallConn()
		if err != nil {
			return err
		}
		var sockErr error
		if err := raw.Control(func(fd uintptr) {
			sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		}); err != nil {
			return err
		}
		if sockErr != nil {
			return fmt.Errorf("set IPV6_RECVPKTINFO: %w", sockErr)
		}
		return nil
	})
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		t.Fatalf("%s: serve UDP on port %d: %v", h.Name, port, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		echoUDP(conn)
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
}

// echoUDP sends every datagram back from the address it arrived at, until
// conn is closed.
func echoUDP(conn *net.UDPConn) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
	for {
		n, oobn, _, from, err := conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. a queued ICMP error
		}
		var reply []byte
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo {
					var info unix.Inet6Pktinfo
					copy(info.Addr[:], m.Data[:16])
					reply = unix.PktInfo6(&info)
				}
			}
		}
		_, _, _ = conn.WriteMsgUDPAddrPort(buf[:n], reply, from)
	}
}

// DialTCP connects from src (ephemeral port) to dst:port inside the
// namespace, waiting at most timeout, and classifies the result. An ICMP
// error ends the attempt at once (see the package documentation). An
// Accepted connection is closed at t.Cleanup at the latest.
func (h *Host) DialTCP(t testing.TB, src, dst netip.Addr, port int, timeout time.Duration) Result {
	t.Helper()
	r, err := h.dialTCP(src, dst, port, timeout, nil)
	if err != nil {
		t.Fatalf("%s: dial TCP: %v", h.Name, err)
	}
	closeAtCleanup(t, r)
	return r
}

// DialMany starts n TCP connects (as DialTCP) from src to dst:port at the
// same moment and returns their results in no particular order. Each holds
// its own OS thread until it is released, so keep n in the hundreds.
// Accepted connections are closed at t.Cleanup at the latest.
func (h *Host) DialMany(t testing.TB, n int, src, dst netip.Addr, port int, timeout time.Duration) []Result {
	t.Helper()
	results := make([]Result, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			var once sync.Once
			wait := func() {
				once.Do(ready.Done)
				<-start
			}
			results[i], errs[i] = h.dialTCP(src, dst, port, timeout, wait)
			once.Do(ready.Done) // if entering the namespace failed before wait
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	for _, r := range results {
		closeAtCleanup(t, r)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("%s: dial TCP: %v", h.Name, err)
	}
	return results
}

// dialTCP connects inside the namespace; wait, if not nil, is called in the
// namespace just before connecting. The error is about the harness (entering
// the namespace), not the connection, which is in the Result.
func (h *Host) dialTCP(src, dst netip.Addr, port int, timeout time.Duration, wait func()) (Result, error) {
	raddr := netip.AddrPortFrom(dst, uint16(port))
	var conn net.Conn
	var dialErr error
	var watch *connectWatch
	err := h.InNS(func() error {
		if wait != nil {
			wait()
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		d := net.Dialer{
			LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			Control: func(_, _ string, c syscall.RawConn) error {
				var watchErr error
				err := c.Control(func(fd uintptr) { watch, watchErr = watchConnect(int(fd), cancel) })
				return errors.Join(err, watchErr)
			},
		}
		conn, dialErr = d.DialContext(ctx, network("tcp", dst), raddr.String())
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	if watch != nil {
		if errno := watch.stop(); errno != 0 && dialErr != nil {
			dialErr = fmt.Errorf("dial %s %v->%v: %w (ICMP error during connect)", network("tcp", dst), src, raddr, errno)
		}
	}
	return Result{Outcome: classify(dialErr), Err: dialErr, Conn: conn}, nil
}

// connectWatch polls SO_ERROR while a TCP connect is pending.
//
// Over veth, the SYN's whole round trip (server, reject, ICMP error back)
// runs inside connect(2) itself, while the client socket is locked. The
// kernel then keeps an ICMP error only as a soft error and retransmits the
// SYN a second later; only the second ICMP error ends the connect. This
// happens every time over IPv6 here. On a real network the ICMP error comes
// after connect(2) returns and ends the connect at once. SO_ERROR returns
// the soft error, so polling it restores that, instead of every rejected
// connect taking a second (or timing out).
type connectWatch struct {
	fd    int           // a duplicate of the socket
	stopc chan struct{} // closed by stop
	done  chan struct{} // closed when run returned
	errno syscall.Errno // the error SO_ERROR reported, valid after done
}

// connectPoll is how often connectWatch reads SO_ERROR.
const connectPoll = 2 * time.Millisecond

// watchConnect starts watching socket fd; it calls cancel when SO_ERROR
// reports an error.
func watchConnect(fd int, cancel context.CancelFunc) (*connectWatch, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate socket: %w", err)
	}
	w := &connectWatch{fd: dup, stopc: make(chan struct{}), done: make(chan struct{})}
	go w.run(cancel)
	return w, nil
}

func (w *connectWatch) run(cancel context.CancelFunc) {
	defer close(w.done)
	ticker := time.NewTicker(connectPoll)
	defer ticker.Stop()
	for {
		select {
		case <-w.stopc:
			return
		case <-ticker.C:
		}
		if v, err := unix.GetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && v != 0 {
			w.errno = syscall.Errno(v)
			cancel()
			return
		}
	}
}

// stop ends the watch and returns the error SO_ERROR reported, if any.
func (w *connectWatch) stop() syscall.Errno {
	close(w.stopc)
	<-w.done
	_ = unix.Close(w.fd)
	return w.errno
}

// udpSeq makes each DialUDP payload unique.
var udpSeq atomic.Int64

// DialUDP sends one datagram from src (ephemeral port) to dst:port over a
// connected UDP socket created in the namespace and waits up to timeout for
// the echo (see ServeUDP). Accepted means the echo came back; an ICMP error
// shows as Refused or Unreachable. An Accepted socket is returned in
// Result.Conn and closed at t.Cleanup at the latest.
func (h *Host) DialUDP(t testing.TB, src, dst netip.Addr, port int, timeout time.Duration) Result {
	t.Helper()
	var conn net.Conn
	var dialErr error
	err := h.InNS(func() error {
		d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		conn, dialErr = d.Dial(network("udp", dst), netip.AddrPortFrom(dst, uint16(port)).String())
		return nil
	})
	if err != nil {
		t.Fatalf("%s: dial UDP: %v", h.Name, err)
	}
	if dialErr != nil {
		return Result{Outcome: classify(dialErr), Err: dialErr}
	}
	payload := fmt.Appendf(nil, "nstest %d %d", os.Getpid(), udpSeq.Add(1))
	err = exchangeUDP(conn, payload, timeout)
	if err != nil {
		_ = conn.Close()
		return Result{Outcome: classify(err), Err: err}
	}
	r := Result{Outcome: Accepted, Conn: conn}
	closeAtCleanup(t, r)
	return r
}

// exchangeUDP writes payload and reads until its echo arrives.
func exchangeUDP(conn net.Conn, payload []byte, timeout time.Duration) error {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	if _, err := conn.Write(payload); err != nil {
		return fmt.Errorf("send to %v: %w", conn.RemoteAddr(), err)
	}
	buf := make([]byte, 2*len(payload))
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("wait for echo from %v: %w", conn.RemoteAddr(), err)
		}
		if bytes.Equal(buf[:n], payload) {
			return conn.SetDeadline(time.Time{})
		}
	}
}

// closeAtCleanup closes r.Conn, if any, at t.Cleanup.
func closeAtCleanup(t testing.TB, r Result) {
	if r.Conn != nil {
		t.Cleanup(func() { _ = r.Conn.Close() })
	}
}
