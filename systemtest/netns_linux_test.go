//go:build linux

package systemtest

// A netLab is a private network for troupe processes, built with `ip` and
// `iptables` (root only):
//
//	root ns: <hostIf> 10.213.S.1/24 ──veth── hub ns: bridge br0
//	                                            ├──veth── node ns 0: eth0 10.213.S.10/24
//	                                            ├──veth── node ns 1: eth0 10.213.S.11/24
//	                                            └── ...
//
// The test process stays in the root namespace and reaches every node
// through its veth; the nodes reach each other through the bridge.
// Partitions are iptables DROP rules inside the node namespaces (so
// connections hang, as in a real partition); the test host's address is
// never dropped, so clients still reach a node cut off from its peers.
//
// Every name carries the prefix trp<pid>-, so that namespaces left behind
// by a test binary that died before its cleanups (go test -timeout, kill)
// can be told apart: they are deleted by a watcher process started with
// the first lab, when the test binary exits, and at the start of any
// later run whose pid differs.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	netnsPrefix = "trp"
	netnsDir    = "/var/run/netns" // where ip keeps named namespaces
	labNet      = "10.213"
)

var (
	labSeq       atomic.Int64
	labInitOnce  sync.Once
	labInitErr   error
	staleNetnsRE = regexp.MustCompile(`^` + netnsPrefix + `([0-9]+)-`)
)

// netLab is one test's network; see the top of the file.
type netLab struct {
	t      *testing.T
	prefix string // trp<pid>-<seq>-, the start of each namespace's name
	subnet int    // S in 10.213.S.0/24
	hub    string // the namespace holding the bridge
	hostIf string // the root namespace's end of the host veth
	ns     []string
	addrs  []string // node i's address, in ns[i]
}

// requireNetLab skips the test when it cannot build a netLab here (not
// root, or no `ip`), and fails it when only iptables is missing: CI
// installs it.
func requireNetLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test builds network namespaces and iptables partitions")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) to build network namespaces")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatal("iptables is missing; install it (apt-get install iptables): the partition test needs it")
	}
}

// newNetLab builds a network for n nodes and registers its removal.
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	requireNetLab(t)
	labInitOnce.Do(func() { labInitErr = initNetLabs() })
	if labInitErr != nil {
		t.Fatalf("cannot prepare network namespaces: %v", labInitErr)
	}
	pid := os.Getpid()
	seq := labSeq.Add(1)
	l := &netLab{
		t:      t,
		prefix: fmt.Sprintf("%s%d-%d-", netnsPrefix, pid, seq),
		hostIf: fmt.Sprintf("%s%dh%d", netnsPrefix, pid, seq),
	}
	if len(l.hostIf) > 15 {
		t.Fatalf("interface name %q is longer than 15 characters", l.hostIf)
	}
	l.hub = l.prefix + "hub"
	t.Cleanup(l.remove)

	l.mustRun("ip", "netns", "add", l.hub)
	l.mustRun("ip", "-n", l.hub, "link", "set", "lo", "up")
	l.mustRun("ip", "-n", l.hub, "link", "add", "br0", "type", "bridge")
	l.mustRun("ip", "-n", l.hub, "link", "set", "br0", "up")
	l.addHostLink(pid)
	l.mustRun("ip", "link", "set", l.hostIf, "up")
	l.mustRun("ip", "-n", l.hub, "link", "set", "vh", "master", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("%sn%d", l.prefix, i)
		addr := fmt.Sprintf("%s.%d.%d", labNet, l.subnet, 10+i)
		l.mustRun("ip", "netns", "add", ns)
		l.ns = append(l.ns, ns)
		l.addrs = append(l.addrs, addr)
		l.mustRun("ip", "-n", ns, "link", "set", "lo", "up")
		veth := fmt.Sprintf("v%d", i)
		l.mustRun("ip", "-n", l.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.mustRun("ip", "-n", l.hub, "link", "set", veth, "master", "br0", "up")
		l.mustRun("ip", "-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		l.mustRun("ip", "-n", ns, "link", "set", "eth0", "up")
	}
	t.Logf("network lab %s*: host %s on %s, nodes %v", l.prefix, l.hostAddr(), l.hostIf, l.addrs)
	return l
}

// addHostLink picks the subnet and gives the root namespace its address on
// it, under a lock, so that concurrent test binaries never pick the same.
func (l *netLab) addHostLink(pid int) {
	l.t.Helper()
	unlock := lockSubnets(l.t)
	defer unlock()
	l.subnet = pickSubnet(l.t, pid, l.hostIf)
	l.mustRun("ip", "link", "add", l.hostIf, "type", "veth", "peer", "name", "vh", "netns", l.hub)
	l.mustRun("ip", "addr", "add", l.hostAddr()+"/24", "dev", l.hostIf)
}

func (l *netLab) hostAddr() string { return fmt.Sprintf("%s.%d.1", labNet, l.subnet) }

// nodeConfig is a node that runs in namespace i and listens on its address.
func (l *netLab) nodeConfig(t *testing.T, i int, id string) nodeConfig {
	t.Helper()
	c := newNodeConfig(t, id)
	c.HTTPAddr = net.JoinHostPort(l.addrs[i], "8080")
	c.RaftAddr = net.JoinHostPort(l.addrs[i], "7080")
	c.NetNS = l.ns[i]
	return c
}

// isolate cuts node i off from every other node (not from the test host).
func (l *netLab) isolate(i int) {
	l.t.Helper()
	for j := range l.ns {
		if j != i {
			l.cut(i, j)
		}
	}
}

// cut drops every packet between nodes a and b, both ways, in both
// namespaces.
func (l *netLab) cut(a, b int) {
	l.t.Helper()
	for _, p := range [][2]int{{a, b}, {b, a}} {
		ns, peer := l.ns[p[0]], l.addrs[p[1]]
		l.mustRun("ip", "netns", "exec", ns, "iptables", "-w", "-A", "INPUT", "-s", peer, "-j", "DROP")
		l.mustRun("ip", "netns", "exec", ns, "iptables", "-w", "-A", "OUTPUT", "-d", peer, "-j", "DROP")
	}
}

// heal removes every partition rule.
func (l *netLab) heal() {
	l.t.Helper()
	for _, ns := range l.ns {
		l.mustRun("ip", "netns", "exec", ns, "iptables", "-w", "-F")
	}
}

// remove deletes the namespaces; with them go their veth ends, and with
// those the peers in the hub and the root namespace.
func (l *netLab) remove() {
	for _, ns := range append(append([]string(nil), l.ns...), l.hub) {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err != nil {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			l.t.Errorf("cannot delete namespace %s: %v: %s", ns, err, out)
		}
	}
	if _, err := net.InterfaceByName(l.hostIf); err == nil {
		_ = exec.Command("ip", "link", "del", l.hostIf).Run()
	}
}

func (l *netLab) mustRun(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// initNetLabs runs once per test binary, before its first lab: it deletes
// the namespaces of test binaries that are gone, and starts a watcher that
// deletes this binary's namespaces once it is gone (its cleanups do not
// run when go test's -timeout or a signal ends it).
func initNetLabs() error {
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	self := os.Getpid()
	for _, e := range entries {
		m := staleNetnsRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		// A namespace named after this binary's pid is stale too: no lab
		// exists yet.
		if pid != self && processExists(pid) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			return fmt.Errorf("cannot delete stale namespace %s: %v: %s", e.Name(), err, out)
		}
	}
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 1; done
for ns in %s/%s%d-*; do [ -e "$ns" ] && ip netns del "${ns##*/}"; done
exit 0`, self, netnsDir, netnsPrefix, self)
	w := exec.Command("sh", "-c", script)
	// Its own session: a ^C to the test's process group must not stop it.
	// No stdio, so go test does not wait for it.
	w.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := w.Start(); err != nil {
		return fmt.Errorf("cannot start the namespace watcher: %w", err)
	}
	go func() { _ = w.Wait() }()
	return nil
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// lockSubnets serializes subnet picking across test binaries.
func lockSubnets(t *testing.T) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "troupe-systemtest-netns.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("cannot open the subnet lock: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			f.Close()
			t.Fatalf("cannot take the subnet lock: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() { f.Close() } // closing releases the lock
}

// pickSubnet returns S such that no interface of the root namespace has an
// address in 10.213.S.0/24, starting from one derived from the pid.
func pickSubnet(t *testing.T, pid int, hostIf string) int {
	t.Helper()
	if _, err := net.InterfaceByName(hostIf); err == nil {
		t.Fatalf("interface %s already exists", hostIf)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("cannot list addresses: %v", err)
	}
	used := map[int]bool{}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip4 := ipn.IP.To4(); ip4 != nil && ip4[0] == 10 && ip4[1] == 213 {
			used[int(ip4[2])] = true
		}
	}
	for k := range 254 {
		s := 1 + (pid+k)%254
		if !used[s] {
			return s
		}
	}
	t.Fatalf("every 10.213.S.0/24 subnet is in use")
	return 0
}
