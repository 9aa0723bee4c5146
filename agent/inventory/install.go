package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Install writes files (file name to content) as component's directory in
// dir, replacing the one there as a whole: the new directory is written
// under a dot-name, which Load skips, and renamed into place. The files are
// parsed first, as Load parses them, so Install never writes a component
// Load would refuse for its content.
func Install(dir, component string, files map[string][]byte) error {
	if err := checkName(component); err != nil {
		return fmt.Errorf("inventory: component %q: %w", component, err)
	}
	for n := range files {
		if err := checkName(n); err != nil {
			return fmt.Errorf("inventory: %s/%q: %w", component, n, err)
		}
	}
	if _, err := parseComponent(component, files); err != nil {
		var fe *FileError
		if errors.As(err, &fe) {
			fe.Path = filepath.Join(component, fe.Path)
			return fe
		}
		return &FileError{Path: component, Err: err}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "."+component+".new-")
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	defer os.RemoveAll(tmp) // gone once renamed; left over only on failure
	// The RIMs are public (signed by their vendor for anyone to check).
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, n), b, 0o644); err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
	}
	target := filepath.Join(dir, component)
	old := ""
	if _, err := os.Lstat(target); err == nil {
		old = filepath.Join(dir, "."+component+".old-"+strings.TrimPrefix(filepath.Base(tmp), "."+component+".new-"))
		if err := os.Rename(target, old); err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
	}
	if err := os.Rename(tmp, target); err != nil {
		if old != "" {
			os.Rename(old, target)
		}
		return fmt.Errorf("inventory: %w", err)
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

// checkName accepts a name for a component or RIM file: one path element,
// not hidden (Load skips those), of at most 255 bytes.
func checkName(n string) error {
	switch {
	case n == "" || n == "." || n == "..":
		return errors.New("not a file name")
	case strings.HasPrefix(n, "."):
		return errors.New("starts with a dot, which Load skips")
	case strings.ContainsAny(n, "/\\\x00"):
		return errors.New("not a single path element")
	case len(n) > 255:
		return errors.New("longer than 255 bytes")
	case !printable(n):
		return errors.New("not printable text")
	}
	return nil
}

// InstallFlat lays out the inventory in dir from a flat directory of RIMs
// named as the testbed's vendor publishes them (agent/sim/vendor.Publish)
// for one image version V: image-V.cose is the component "image",
// config-V.cose "config", pkg-NAME-V.cose the package "NAME", and
// base-V.cose, the TCG PC Client base RIM, is the component "platform",
// with pcrs-V.corim and support-V.rimel (the signed PCR values and the
// support RIM of that platform) beside it. Other files are left alone.
func InstallFlat(dir, flat, version string) error {
	names, err := readDir(flat, 1<<16)
	if err != nil {
		return &FileError{Path: flat, Err: err}
	}
	comps := map[string]map[string][]byte{}
	suffix := "-" + version
	for _, n := range names {
		ext := filepath.Ext(n)
		stem, ok := strings.CutSuffix(strings.TrimSuffix(n, ext), suffix)
		if !ok {
			continue
		}
		var comp string
		switch {
		case stem == "image" && ext == ".cose", stem == "config" && ext == ".cose":
			comp = stem
		case stem == "base" && ext == ".cose", stem == "pcrs" && ext == ".corim", stem == "support" && ext == ".rimel":
			comp = "platform"
		case strings.HasPrefix(stem, "pkg-") && len(stem) > len("pkg-") && ext == ".cose":
			comp = strings.TrimPrefix(stem, "pkg-")
			if _, taken := comps[comp]; taken || comp == "image" || comp == "config" || comp == "platform" {
				return &FileError{Path: filepath.Join(flat, n), Err: fmt.Errorf("%w: package %q has the name of another component", ErrLayout, comp)}
			}
		default:
			continue
		}
		b, err := readFile(filepath.Join(flat, n), DefaultLimits().MaxFileSize)
		if err != nil {
			return &FileError{Path: filepath.Join(flat, n), Err: err}
		}
		if comps[comp] == nil {
			comps[comp] = map[string][]byte{}
		}
		comps[comp][n] = b
	}
	if len(comps) == 0 {
		return &FileError{Path: flat, Err: fmt.Errorf("%w: no RIMs of version %s", ErrLayout, version)}
	}
	order := make([]string, 0, len(comps))
	for c := range comps {
		order = append(order, c)
	}
	sort.Strings(order)
	for _, c := range order {
		if err := Install(dir, c, comps[c]); err != nil {
			return err
		}
	}
	return nil
}
