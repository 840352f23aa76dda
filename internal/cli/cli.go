// Package cli implements nftlimitd's command line: it parses flags, loads
// the configuration, and calls the ruleset and netlinkx packages. Exit codes
// follow the product contract: 0 ok, 1 configuration or usage error, 2 the
// kernel refused or lacks a feature.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nftlimitd/nftlimitd/internal/banstate"
	"github.com/nftlimitd/nftlimitd/internal/config"
	"github.com/nftlimitd/nftlimitd/internal/daemon"
	"github.com/nftlimitd/nftlimitd/pkg/netlinkx"
	"github.com/nftlimitd/nftlimitd/pkg/ruleset"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitConfig  = 1
	ExitKernel  = 2
	ExitChanges = 3 // `diff` found changes to apply
)

// Env is what a command needs from its surroundings.
type Env struct {
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// Version is the build's version string.
	Version string
	// Dial opens the kernel connection; nil means netlinkx.Open().
	Dial func() (*netlinkx.Conn, error)
}

// command is one subcommand.
type command struct {
	name  string
	usage string
	run   func(e *Env, args []string) int
}

func commands() []command {
	return []command{
		{"run", "run [-c FILE] [-debug]: the daemon: apply, then keep the kernel equal to the configuration (the default command)", run},
		{"check", "check [-c FILE]: validate the configuration", check},
		{"render", "render [-c FILE]: print the table nftlimitd would program, in nft syntax", render},
		{"apply", "apply [-c FILE]: make the kernel equal to the configuration once and exit", apply},
		{"diff", "diff [-c FILE]: show what apply would change (exit 0: nothing, 3: changes)", diff},
		{"status", "status [-c FILE] [--json]: per limit: tracked sources, bans, hits, heaviest sources", statusCmd},
		{"ban", "ban ADDR --limit NAME --for DURATION [-c FILE]: ban a source group now", ban},
		{"unban", "unban ADDR [--limit NAME] [-c FILE]: lift a ban now", unban},
		{"probe", "probe HOST:PORT [-n 100] [--hold 5s]: open N parallel connections and report accepted / refused / timed out", probeCmd},
		{"remove", "remove [-c FILE] [--table NAME]: delete nftlimitd's table", remove},
		{"version", "version: print the version and the kernel features found", version},
	}
}

// Main runs the command line args (without the program name) and returns
// the exit code.
func Main(args []string, e *Env) int {
	if e.Dial == nil {
		e.Dial = func() (*netlinkx.Conn, error) { return netlinkx.Open() }
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		// `nftlimitd` alone (or with run's flags) is `nftlimitd run`.
		return run(e, args)
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(e.Stdout)
		return ExitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(e, args[1:])
		}
	}
	fmt.Fprintf(e.Stderr, "nftlimitd: unknown command %q\n", name)
	usage(e.Stderr)
	return ExitConfig
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: nftlimitd COMMAND [flags]")
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s\n", c.usage)
	}
	fmt.Fprintf(w, "-c defaults to %s; %s overrides it.\n", config.DefaultPath, config.EnvPath)
}

// flags returns a flag set with -c, bound to the configuration path.
func flags(e *Env, name string, path *string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	def := config.DefaultPath
	if v := e.Getenv(config.EnvPath); v != "" {
		def = v
	}
	fs.StringVar(path, "c", def, "configuration file")
	return fs
}

// load reads the configuration and prints its warnings, or its errors.
func load(e *Env, path string) (*config.Config, bool) {
	cfg, err := config.Load(path)
	if err != nil {
		var list config.ErrorList
		if errors.As(err, &list) {
			for _, x := range list {
				fmt.Fprintln(e.Stderr, x.Error())
			}
		} else {
			fmt.Fprintf(e.Stderr, "nftlimitd: %v\n", err)
		}
		return nil, false
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(e.Stderr, "%s: warning: %s\n", w.Pos, w.Msg)
	}
	return cfg, true
}

// parse parses a command's flags and loads the configuration.
func parse(e *Env, name string, args []string) (*config.Config, int) {
	var path string
	fs := flags(e, name, &path)
	if err := fs.Parse(args); err != nil {
		return nil, ExitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.Stderr, "nftlimitd %s: unexpected argument %q\n", name, fs.Arg(0))
		return nil, ExitConfig
	}
	cfg, ok := load(e, path)
	if !ok {
		return nil, ExitConfig
	}
	return cfg, ExitOK
}

// desired parses a command's flags, loads the configuration and computes
// the table it asks for.
func desired(e *Env, name string, args []string) (*config.Config, *ruleset.Table, int) {
	cfg, code := parse(e, name, args)
	if cfg == nil {
		return nil, nil, code
	}
	t, err := ruleset.Desired(cfg)
	if err != nil {
		return nil, nil, fail(e, err, ExitConfig)
	}
	return cfg, t, ExitOK
}

// fail prints err (with a hint for the usual kernel errors) and returns
// code.
func fail(e *Env, err error, code int) int {
	fmt.Fprintf(e.Stderr, "nftlimitd: %v\n", kernelHint(err))
	return code
}

// dial opens the kernel connection, or prints why it could not.
func dial(e *Env) (*netlinkx.Conn, int) {
	c, err := e.Dial()
	if err != nil {
		return nil, fail(e, err, ExitKernel)
	}
	return c, ExitOK
}

func check(e *Env, args []string) int {
	cfg, _, code := desired(e, "check", args)
	if cfg == nil {
		return code
	}
	fmt.Fprintf(e.Stdout, "nftlimitd: configuration OK: %d limit(s) from %s\n", len(cfg.Limits), strings.Join(cfg.Files, ", "))
	return ExitOK
}

func render(e *Env, args []string) int {
	_, t, code := desired(e, "render", args)
	if t == nil {
		return code
	}
	fmt.Fprint(e.Stdout, ruleset.Render(t))
	return ExitOK
}

// kernel opens the connection and probes kernel support.
func kernel(e *Env) (*netlinkx.Conn, int) {
	c, code := dial(e)
	if c == nil {
		return nil, code
	}
	if _, err := c.Probe(); err != nil {
		c.Close()
		return nil, fail(e, err, ExitKernel)
	}
	return c, ExitOK
}

func kernelHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (nftlimitd needs root or CAP_NET_ADMIN)", err)
	}
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return fmt.Errorf("kernel lacks nf_tables (CONFIG_NF_TABLES): try 'modprobe nf_tables' (%w)", err)
	}
	return err
}

func apply(e *Env, args []string) int {
	_, want, code := desired(e, "apply", args)
	if want == nil {
		return code
	}
	c, code := kernel(e)
	if c == nil {
		return code
	}
	defer c.Close()
	plan, err := c.Apply(want)
	if err != nil {
		return fail(e, err, ExitKernel)
	}
	if plan.Empty() {
		fmt.Fprintf(e.Stdout, "table inet %s is up to date\n", want.Name)
		return ExitOK
	}
	fmt.Fprint(e.Stdout, plan.String())
	fmt.Fprintf(e.Stdout, "applied %d change(s) to table inet %s in one transaction\n", len(plan.Changes), want.Name)
	return ExitOK
}

func diff(e *Env, args []string) int {
	_, want, code := desired(e, "diff", args)
	if want == nil {
		return code
	}
	c, code := dial(e)
	if c == nil {
		return code
	}
	defer c.Close()
	plan, err := c.Plan(want)
	if err != nil {
		return fail(e, err, ExitKernel)
	}
	if plan.Empty() {
		return ExitOK
	}
	fmt.Fprint(e.Stdout, plan.String())
	return ExitChanges
}

func remove(e *Env, args []string) int {
	var path, table string
	fs := flags(e, "remove", &path)
	fs.StringVar(&table, "table", "", "name of the table to delete (default: the configuration's)")
	if err := fs.Parse(args); err != nil {
		return ExitConfig
	}
	if table == "" {
		cfg, ok := load(e, path)
		if !ok {
			fmt.Fprintln(e.Stderr, "nftlimitd: cannot tell which table to remove: fix the configuration or pass --table NAME")
			return ExitConfig
		}
		table = cfg.Table.Name
	}
	c, code := dial(e)
	if c == nil {
		return code
	}
	defer c.Close()
	found, err := c.Remove(table)
	if err != nil {
		return fail(e, err, ExitKernel)
	}
	if !found {
		fmt.Fprintf(e.Stdout, "table inet %s does not exist\n", table)
		return ExitOK
	}
	fmt.Fprintf(e.Stdout, "deleted table inet %s\n", table)
	return ExitOK
}

func version(e *Env, args []string) int {
	fmt.Fprintf(e.Stdout, "nftlimitd %s (%s)\n", e.Version, runtime.Version())
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		fmt.Fprintf(e.Stdout, "kernel %s\n", unix.ByteSliceToString(u.Release[:]))
	}
	c, code := dial(e)
	if c == nil {
		return code
	}
	defer c.Close()
	features, err := c.Probe()
	if features == nil && err != nil {
		fmt.Fprintf(e.Stderr, "nftlimitd: %v\n", err)
		return ExitKernel
	}
	for _, f := range features {
		state := "yes"
		if !f.Available {
			state = fmt.Sprintf("MISSING: %v", (&netlinkx.FeatureError{Feature: f}).Error())
		}
		fmt.Fprintf(e.Stdout, "  %-28s %s\n", f.Name, state)
	}
	if err != nil {
		return ExitKernel
	}
	return ExitOK
}

func run(e *Env, args []string) int {
	var path string
	var debug bool
	fs := flags(e, "run", &path)
	fs.BoolVar(&debug, "debug", false, "log every reconcile and change")
	state := fs.String("state", banstate.DefaultPath, "file that keeps bans across reboots (empty: none)")
	if err := fs.Parse(args); err != nil {
		return ExitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.Stderr, "nftlimitd run: unexpected argument %q\n", fs.Arg(0))
		return ExitConfig
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	hopts := &slog.HandlerOptions{Level: level}
	if e.Getenv("JOURNAL_STREAM") != "" {
		// journald stamps every line itself.
		hopts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	log := slog.New(slog.NewTextHandler(e.Stderr, hopts))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := daemon.Run(ctx, daemon.Options{ConfigPath: path, Logger: log, Dial: e.Dial, StatePath: *state})
	var cerr *daemon.ConfigError
	var kerr *daemon.KernelError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &cerr):
		log.Error("not started", "config", path, "error", err)
		return ExitConfig
	case errors.As(err, &kerr):
		log.Error("not started", "error", kernelHint(kerr.Err))
		return ExitKernel
	default:
		log.Error("stopped", "error", err)
		return ExitKernel
	}
}
