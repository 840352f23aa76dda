package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(args, &Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }, Version: "test"})
	return out.String(), errOut.String(), code
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(good, []byte("[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 3\n"), 0o644)
	os.WriteFile(bad, []byte("[[limit]]\nname = \"ssh\"\nports = [22]\nmax_connections = 0\n"), 0o644)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"good file", nil, []string{"check", "-c", good}, ExitOK, "configuration OK: 1 limit(s)"},
		{"bad file names FILE:LINE:COL", nil, []string{"check", "-c", bad}, ExitConfig, bad + ":4:"},
		{"NFTLIMIT_CONFIG", map[string]string{"NFTLIMIT_CONFIG": bad}, []string{"check"}, ExitConfig, bad + ":4:"},
		{"-c beats NFTLIMIT_CONFIG", map[string]string{"NFTLIMIT_CONFIG": bad}, []string{"check", "-c", good}, ExitOK, "configuration OK"},
		{"missing file", nil, []string{"check", "-c", filepath.Join(dir, "none.conf")}, ExitConfig, "none.conf"},
		{"unknown command", nil, []string{"frobnicate"}, ExitConfig, `unknown command "frobnicate"`},
		{"stray argument", nil, []string{"check", "-c", good, "extra"}, ExitConfig, `unexpected argument "extra"`},
		{"render", nil, []string{"render", "-c", good}, ExitOK, "add @ssh_conn4 { ip saddr ct count over 3 } goto act_ssh"},
		{"render of a bad file", nil, []string{"render", "-c", bad}, ExitConfig, bad + ":4:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, tc.env, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(out+errOut, tc.want) {
				t.Errorf("output does not contain %q\nstdout: %s\nstderr: %s", tc.want, out, errOut)
			}
		})
	}
}

// TestExampleConfigs: the shipped nftlimit.conf and the README's example
// pass `check`, so the documentation cannot drift from the parser.
func TestExampleConfigs(t *testing.T) {
	if _, errOut, code := runCLI(t, nil, "check", "-c", "../../nftlimit.conf"); code != ExitOK {
		t.Errorf("nftlimit.conf: exit %d: %s", code, errOut)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```toml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no ```toml example")
	}
	dir := t.TempDir()
	// The example names an exempt file under /etc: provide it.
	exempt := filepath.Join(dir, "cdn-ranges.txt")
	os.WriteFile(exempt, []byte("# CDN\n203.0.113.0/24\n"), 0o644)
	text := strings.ReplaceAll(string(m[1]), "/etc/nftlimit.d/cdn-ranges.txt", exempt)
	p := filepath.Join(dir, "readme.conf")
	os.WriteFile(p, []byte(text), 0o644)
	if _, errOut, code := runCLI(t, nil, "check", "-c", p); code != ExitOK {
		t.Errorf("README example: exit %d: %s", code, errOut)
	}
}
