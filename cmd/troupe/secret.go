package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Secrets never need to appear in a process's arguments, which every user
// of the machine can read (ps, /proc/PID/cmdline): the cluster secret is
// also read from a file (--cluster-secret-file) or the environment
// (TROUPE_CLUSTER_SECRET). --cluster-secret on the command line still
// works, with a warning, so that existing scripts keep running.

// maxSecretFileBytes bounds what a secret file may hold.
const maxSecretFileBytes = 4096

// readSecretFile reads a secret from path: the file's content without
// surrounding white space (a trailing newline), which must not be empty.
// warn is set when the file may be read by others than its owner.
func readSecretFile(flagName, path string) (secret, warn string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("--%s: cannot read %q: %w", flagName, path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", "", fmt.Errorf("--%s: cannot read %q: %w", flagName, path, err)
	}
	if len(data) > maxSecretFileBytes {
		return "", "", fmt.Errorf("--%s: %q holds more than %d bytes; a secret file holds the secret alone", flagName, path, maxSecretFileBytes)
	}
	secret = strings.TrimSpace(string(data))
	if secret == "" {
		return "", "", fmt.Errorf("--%s: %q is empty", flagName, path)
	}
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		warn = fmt.Sprintf("--%s: %q may be read by other users (mode %v); chmod 600 it", flagName, path, st.Mode().Perm())
	}
	return secret, warn, nil
}

// settleClusterSecret decides the cluster secret from --cluster-secret
// (onArgv: given as a flag, not through the environment) and
// --cluster-secret-file, and returns the warnings to log.
func settleClusterSecret(secret, file string, onArgv bool) (string, []string, error) {
	var warnings []string
	if file != "" {
		if secret != "" {
			return "", nil, errors.New("--cluster-secret and --cluster-secret-file exclude each other: give one")
		}
		s, warn, err := readSecretFile("cluster-secret-file", file)
		if err != nil {
			return "", nil, err
		}
		if warn != "" {
			warnings = append(warnings, warn)
		}
		return s, warnings, nil
	}
	if secret != "" && onArgv {
		warnings = append(warnings, "--cluster-secret on the command line is visible to every user of this machine (ps, /proc); use --cluster-secret-file or TROUPE_CLUSTER_SECRET")
	}
	return secret, warnings, nil
}
