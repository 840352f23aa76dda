package nstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error

	staleBuildRegexp = regexp.MustCompile(`^nlt-build-([0-9]+)$`)
)

// BuildBinary builds ./cmd/nftlimitd of the enclosing module (found by
// walking up from the working directory to go.mod) once per test process
// and returns the binary's path. A failed build fails t with go build's
// output, in every test that asks. The binary lives in
// $TMPDIR/nlt-build-<pid>; directories of processes that are gone are
// removed by the next build.
func BuildBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("build nftlimitd: %v", buildErr)
	}
	return buildPath
}

func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	sweepStaleBuilds()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("nlt-build-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create build directory: %w", err)
	}
	out := filepath.Join(dir, "nftlimitd")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/nftlimitd")
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s (in %s): %w\n%s", strings.Join(cmd.Args, " "), root, err, strings.TrimSpace(string(output)))
	}
	return out, nil
}

// moduleRoot returns the nearest directory at or above the working
// directory that holds a go.mod.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("find module root: %w", err)
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("find module root: no go.mod in %s or above", wd)
		}
	}
}

// sweepStaleBuilds removes build directories of processes that are gone.
func sweepStaleBuilds() {
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		m := staleBuildRegexp.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if pid, err := strconv.Atoi(m[1]); err == nil && pid != os.Getpid() && !processExists(pid) {
			_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
		}
	}
}
