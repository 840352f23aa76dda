// Command demo shows nftlimitd's limits biting: it makes two throwaway
// network namespaces (a server and a client with several source addresses)
// joined by a veth pair, applies a configuration in the server namespace,
// opens connections from the client, and prints what was accepted and what
// was refused. It cleans everything up on the way out. It needs root.
//
// It runs itself again inside the namespaces (`ip netns exec NS demo serve`
// and `... demo dial`), so that no thread ever switches namespace.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	serverAddr = "192.0.2.1"
	proxyAddr  = "198.51.100.7"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve":
			serve(os.Args[2:])
			return
		case "dial":
			dial(os.Args[2:])
			return
		}
	}
	bin := flag.String("bin", "bin/nftlimitd", "the nftlimitd binary")
	cfg := flag.String("config", "nftlimit.conf", "the configuration to apply")
	flag.Parse()
	if err := run(*bin, *cfg); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	srv, cli string
	self     string
	server   *exec.Cmd
}

func run(bin, cfg string) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo makes network namespaces: run it as root (make demo uses sudo)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if bin, err = absPath(bin); err != nil {
		return err
	}
	if cfg, err = absPath(cfg); err != nil {
		return err
	}
	id := os.Getpid()
	d := &demo{srv: fmt.Sprintf("nftlimit-demo-%d-srv", id), cli: fmt.Sprintf("nftlimit-demo-%d-cli", id), self: self}
	defer d.cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; d.cleanup(); os.Exit(130) }()

	step("1. Two throwaway network namespaces joined by a veth pair")
	if err := d.setup(); err != nil {
		return err
	}
	fmt.Printf("   server %s listens on 22, 80 and 443\n", serverAddr)
	fmt.Printf("   client has 198.51.100.10, .11, .12, %s (a trusted proxy) and 203.0.113.5\n", proxyAddr)

	step("2. nftlimitd check + apply -c " + cfg + " (in the server namespace)")
	if err := show(exec.Command("ip", "netns", "exec", d.srv, bin, "check", "-c", cfg)); err != nil {
		return err
	}
	if err := show(exec.Command("ip", "netns", "exec", d.srv, bin, "apply", "-c", cfg)); err != nil {
		return err
	}

	step("3. ssh (port 22, max_connections = 3): 5 connections from one address")
	if err := d.dial("22", "198.51.100.10*5"); err != nil {
		return err
	}
	step("4. http (port 80, max_connections = 20 per /24): 25 from three addresses of one /24, 5 from another /24")
	if err := d.dial("80", "198.51.100.10*10", "198.51.100.11*10", "198.51.100.12*5", "203.0.113.5*5"); err != nil {
		return err
	}
	step("5. http from the exempt proxy " + proxyAddr + ": 30 connections")
	if err := d.dial("80", proxyAddr+"*30"); err != nil {
		return err
	}
	step("6. http-rate (10 new connections per 100 s, ban 10m): 203.0.113.5 opens 8 more, one after another")
	if err := d.dial("80", "203.0.113.5+8"); err != nil {
		return err
	}
	step("7. nftlimitd status")
	if err := show(exec.Command("ip", "netns", "exec", d.srv, bin, "status", "-c", cfg)); err != nil {
		return err
	}
	step("8. nftlimitd unban 203.0.113.5 (its bucket still refills one connection per 10 s: going over again bans it again)")
	if err := show(exec.Command("ip", "netns", "exec", d.srv, bin, "unban", "203.0.113.5", "-c", cfg)); err != nil {
		return err
	}
	step("9. Apply again: nothing to change")
	if err := show(exec.Command("ip", "netns", "exec", d.srv, bin, "apply", "-c", cfg)); err != nil {
		return err
	}
	step("Done: cleaning up the namespaces")
	return nil
}

func step(s string) { fmt.Printf("\n== %s\n", s) }

func absPath(p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return wd + "/" + p, nil
}

func show(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Printf("   %s\n", l)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	return nil
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (d *demo) setup() error {
	steps := [][]string{
		{"ip", "netns", "add", d.srv},
		{"ip", "netns", "add", d.cli},
		{"ip", "-n", d.srv, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", d.cli},
		{"ip", "-n", d.srv, "link", "set", "lo", "up"},
		{"ip", "-n", d.cli, "link", "set", "lo", "up"},
		{"ip", "-n", d.srv, "addr", "add", serverAddr + "/24", "dev", "eth0"},
		{"ip", "-n", d.srv, "link", "set", "eth0", "up"},
		{"ip", "-n", d.cli, "link", "set", "eth0", "up"},
		{"ip", "-n", d.srv, "route", "add", "198.51.100.0/24", "dev", "eth0"},
		{"ip", "-n", d.srv, "route", "add", "203.0.113.0/24", "dev", "eth0"},
		{"ip", "-n", d.cli, "route", "add", "192.0.2.0/24", "dev", "eth0"},
	}
	for _, a := range []string{"198.51.100.10", "198.51.100.11", "198.51.100.12", proxyAddr, "203.0.113.5"} {
		steps = append(steps, []string{"ip", "-n", d.cli, "addr", "add", a + "/32", "dev", "eth0"})
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return err
		}
	}
	d.server = exec.Command("ip", "netns", "exec", d.srv, d.self, "serve", "22", "80", "443")
	d.server.Stderr = os.Stderr
	if err := d.server.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	// Wait until the server listens.
	for i := 0; i < 100; i++ {
		if exec.Command("ip", "netns", "exec", d.cli, d.self, "dial", "443", proxyAddr+"*1").Run() == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("server did not come up")
}

// dial opens connections from the client namespace and prints the outcome.
func (d *demo) dial(port string, specs ...string) error {
	args := append([]string{"netns", "exec", d.cli, d.self, "dial", port}, specs...)
	return show(exec.Command("ip", args...))
}

func (d *demo) cleanup() {
	if d.server != nil && d.server.Process != nil {
		_ = d.server.Process.Kill()
		_ = d.server.Wait()
		d.server = nil
	}
	for _, ns := range []string{d.cli, d.srv} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// serve accepts connections on the given ports and holds them open until the
// client closes them.
func serve(ports []string) {
	for _, p := range ports {
		l, err := net.Listen("tcp", ":"+p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "serve: %v\n", err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					buf := make([]byte, 1)
					_, _ = c.Read(buf)
					c.Close()
				}()
			}
		}()
	}
	select {}
}

// dial opens, for each "ADDR*N" spec, N parallel connections from ADDR to
// the server port (for "ADDR+N", N one after another), holds them all until
// the end, and prints a line per source.
func dial(args []string) {
	port := args[0]
	var held []net.Conn
	for _, spec := range args[1:] {
		sep := "*"
		if strings.Contains(spec, "+") {
			sep = "+"
		}
		src, n, _ := strings.Cut(spec, sep)
		count, _ := strconv.Atoi(n)
		var mu sync.Mutex
		var wg sync.WaitGroup
		res := map[string]int{}
		for i := 0; i < count; i++ {
			if sep == "+" {
				wg.Wait() // one after another
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				dl := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
				c, err := dl.Dial("tcp", net.JoinHostPort(serverAddr, port))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					res["accepted"]++
					held = append(held, c)
				case errors.Is(err, syscall.ECONNREFUSED):
					res["refused"]++
				default:
					res["timed out"]++
				}
			}()
		}
		wg.Wait()
		how := "at once"
		if sep == "+" {
			how = "in turn"
		}
		fmt.Printf("from %-15s -> %s:%s  %2d %-7s: %2d accepted, %2d refused (tcp reset), %d timed out (dropped)\n",
			src, serverAddr, port, count, how, res["accepted"], res["refused"], res["timed out"])
	}
	for _, c := range held {
		c.Close()
	}
}
