//go:build !linux

package systemtest

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent.
func sysProcAttr() *syscall.SysProcAttr { return nil }
