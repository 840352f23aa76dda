// Command nftlimitd gives Linux servers per-client connection limits,
// natively on nftables, from one declarative file. See README.md.
package main

import (
	"os"

	"github.com/nftlimitd/nftlimitd/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(cli.Main(os.Args[1:], &cli.Env{
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Getenv:  os.Getenv,
		Version: version,
	}))
}
