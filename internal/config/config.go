package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// SnippetDir is the directory, next to the main file, whose *.conf files
// are read after it.
const SnippetDir = "nftlimit.d"

// File is one configuration file's name and contents. Name is used in
// positions and to find exempt files named relative to it.
type File struct {
	Name string
	Data []byte
}

// Load reads the main configuration file at path, then every *.conf file of
// the nftlimit.d directory next to it in lexical order (a missing directory
// is fine), and validates them.
//
// A file that cannot be read is returned as a plain error. Problems in the
// files are returned as an ErrorList holding all of them; the Config is then
// nil.
func Load(path string) (*Config, error) {
	files, err := readFiles(path)
	if err != nil {
		return nil, err
	}
	return Parse(files)
}

// readFiles reads the main file and its snippets.
func readFiles(path string) ([]File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	files := []File{{Name: path, Data: data}}

	dir := filepath.Join(filepath.Dir(path), SnippetDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return files, nil
	}
	if err != nil {
		return nil, err
	}
	// ReadDir sorts by name.
	for _, e := range entries {
		if ok, _ := filepath.Match("*.conf", e.Name()); !ok || e.IsDir() {
			continue
		}
		name := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: name, Data: data})
	}
	return files, nil
}

// Parse validates configuration files: files[0] is the main file, the
// others are snippets, which may hold only [[limit]] tables. Exempt files
// are read from disk, relative to the directory of the file that names
// them.
//
// Problems are returned as an ErrorList, sorted by file and position; the
// Config is then nil.
func Parse(files []File) (*Config, error) {
	return parse(files, options{open: openRegular, rates: rateEnforced})
}

// options are what tests change.
type options struct {
	// open opens an exempt file.
	open func(path string) (io.ReadCloser, error)
	// rates accepts rate, burst and ban (see rateEnforced).
	rates bool
}

func parse(files []File, opts options) (*Config, error) {
	if len(files) == 0 {
		return nil, errors.New("no configuration file to parse")
	}
	v := &validator{
		opts:   opts,
		exempt: map[string]*exemptList{},
		names:  map[string]Position{},
	}

	// Stage one: TOML into raw structs, file by file.
	raws := make([]*rawFile, len(files))
	srcs := make([]*source, len(files))
	d := &decoder{errs: &v.errs}
	for i, f := range files {
		v.files = append(v.files, f.Name)
		srcs[i] = newSource(f.Name, f.Data)
		if root := parseTOML(srcs[i], &v.errs); root != nil {
			raws[i] = d.file(root, i > 0)
		}
	}

	// Stage two: values, defaults and the typed Config. A file that is
	// not valid TOML has been reported and is left out; its snippets'
	// limits are checked against the built-in defaults.
	cfg := &Config{}
	b := builtinDefaults()
	if main := raws[0]; main != nil {
		cfg.Table = v.table(main.table)
		cfg.Metrics = v.metrics(main.metrics)
		if main.defaults != nil {
			v.common("defaults", main.defaults, &b, srcs[0])
		}
	} else {
		cfg.Table = v.table(nil)
	}
	for i, f := range raws {
		if f == nil {
			continue
		}
		for _, r := range f.limits {
			cfg.Limits = append(cfg.Limits, v.limit(r, b, srcs[i]))
		}
	}
	cfg.Files = v.files

	if len(v.errs) > 0 {
		sortErrors(v.errs, v.files)
		return nil, v.errs
	}
	sortErrors(v.warns, v.files)
	cfg.Warnings = v.warns
	return cfg, nil
}

// openRegular opens a regular file, and refuses anything else (a FIFO or a
// device would block or never end).
func openRegular(path string) (io.ReadCloser, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return os.Open(path)
}

// Limit returns the limit called name.
func (c *Config) Limit(name string) (*Limit, bool) {
	for i := range c.Limits {
		if c.Limits[i].Name == name {
			return &c.Limits[i], true
		}
	}
	return nil, false
}
