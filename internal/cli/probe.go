package cli

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// probeCmd opens N parallel connections to HOST:PORT and reports how many
// were accepted, refused or timed out: the "does my limit work?" test.
func probeCmd(e *Env, args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	n := fs.Int("n", 100, "number of parallel connections")
	hold := fs.Duration("hold", 5*time.Second, "how long to hold the accepted connections open")
	timeout := fs.Duration("timeout", 3*time.Second, "how long a connection may take before it counts as timed out")
	source := fs.String("source", "", "local address to connect from (default: chosen by the kernel)")
	var target string
	rest := args
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return ExitConfig
		}
		if fs.NArg() == 0 {
			break
		}
		if target != "" {
			fmt.Fprintf(e.Stderr, "nftlimitd probe: unexpected argument %q\n", fs.Arg(0))
			return ExitConfig
		}
		target, rest = fs.Arg(0), fs.Args()[1:]
	}
	if target == "" || *n < 1 {
		fmt.Fprintln(e.Stderr, "usage: nftlimitd probe HOST:PORT [-n 100] [--hold 5s] [--timeout 3s] [--source ADDR]")
		return ExitConfig
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		fmt.Fprintf(e.Stderr, "nftlimitd probe: %v\n", err)
		return ExitConfig
	}
	d := net.Dialer{Timeout: *timeout}
	if *source != "" {
		ip := net.ParseIP(*source)
		if ip == nil {
			fmt.Fprintf(e.Stderr, "nftlimitd probe: %q is not an address\n", *source)
			return ExitConfig
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}

	var mu sync.Mutex
	var wg sync.WaitGroup
	counts := map[string]int{}
	var held []net.Conn
	var other error
	start := time.Now()
	for i := 0; i < *n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.Dial("tcp", target)
			kind := outcome(err)
			mu.Lock()
			defer mu.Unlock()
			counts[kind]++
			if c != nil {
				held = append(held, c)
			}
			if kind == "other" && other == nil {
				other = err
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	fmt.Fprintf(e.Stdout, "probe %s: %d connections in %v: %d accepted, %d refused, %d unreachable, %d timed out, %d other errors\n",
		target, *n, took.Round(time.Millisecond), counts["accepted"], counts["refused"], counts["unreachable"], counts["timed out"], counts["other"])
	if other != nil {
		fmt.Fprintf(e.Stdout, "first other error: %v\n", other)
	}
	if len(held) > 0 && *hold > 0 {
		fmt.Fprintf(e.Stdout, "holding %d accepted connection(s) for %v\n", len(held), *hold)
		time.Sleep(*hold)
	}
	for _, c := range held {
		c.Close()
	}
	return ExitOK
}

// outcome classifies a dial's result.
func outcome(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "accepted"
	case errors.Is(err, unix.ECONNREFUSED):
		return "refused"
	case errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return "unreachable"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out"
	}
	return "other"
}
