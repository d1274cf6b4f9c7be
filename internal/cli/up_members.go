package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/cpserver"
	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/repl/transport"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

// `cmkdb up --nodes N` (N > 1) runs Cluster0 as an N-member replica set,
// every member its own `cmkdb node` process (so one can be killed) with
// its own data directory, keystore and node master key, reaching the CMK
// through the control plane's key service under its own certificate, and
// raft to the other members over mutual TLS with a member certificate from
// the control plane's CA. The layout:
//
//	DIR/members/m<i>/node.json   the member's configuration (ports kept across runs)
//	DIR/members/m<i>/pki/        its node certificate (key service) and member certificate (raft)
//	DIR/members/m<i>/node/       its keystore and databases
//	DIR/members/m<i>/node.log    its output
//	DIR/members/m<i>/up.json     what it serves
//
// up supervises the processes: a member that exits while up runs is
// started again after a second (a killed primary comes back as a
// secondary once a new primary was elected). With --tls every member
// serves up's server certificate; with --auth the primary creates the
// administrator, whose password every member reads from a file.

func membersDir(dir string) string { return filepath.Join(dir, "members") }

// checkLayoutFor refuses to change a data directory between one node and
// a replica set: the data of one is not the data of the other, and
// nothing converts it yet.
func checkLayoutFor(dir string, members int) error {
	single := node.Layout{Dir: dir}.KeystoreDir()
	_, singleErr := os.Stat(single)
	_, setErr := os.Stat(membersDir(dir))
	switch {
	case members > 1 && singleErr == nil:
		return fmt.Errorf("%s holds a one-node Cluster0 (%s): --nodes %d would start a replica set without its data; run without --nodes, or use another --dir", dir, single, members)
	case members <= 1 && setErr == nil:
		return fmt.Errorf("%s holds a replica set (%s): start it with the same --nodes", dir, membersDir(dir))
	}
	return nil
}

// memberSet is a cluster's running member processes (Resize adds and
// removes some: up_membership.go).
type memberSet struct {
	mu    sync.Mutex
	procs []*memberProc
	uri   string
	stop  func()

	ctx context.Context // the processes' lifetime
	// testCommands passes --enable-test-commands to the members.
	testCommands bool
	wg           *sync.WaitGroup
	exe          string
	sec          memberSecurity
	base         string
	gid, cluster string
	// forget drops the control plane's record of a member whose keystore
	// was destroyed (controlplane.Service.ForgetNode).
	forget func(member string) error
}

type memberProc struct {
	name, dir, cfgFile string
	// args are extra flags of its `cmkdb node` (--enable-test-commands).
	args   []string
	log    *slog.Logger
	cancel func()        // stops this member's process
	done   chan struct{} // closed once it stopped
}

// startMembers writes (first run) or reuses each member's configuration,
// starts the processes and waits for each to serve.
// base is the members' directory; first says the cluster is Cluster0,
// whose members take --port, --port+1, … (others take free ports).
func (p *upProvisioner) startMembers(ctx context.Context, gid, cluster string, n int, base string, first bool) (*runningNode, error) {
	f := p.f
	cfgs, err := p.memberConfigs(gid, cluster, n, base, first)
	if err != nil {
		return nil, err
	}
	sec, err := p.memberSecurity(base)
	if err != nil {
		return nil, err
	}
	for _, c := range cfgs {
		c.TLS, c.Auth = sec.tls, sec.auth
		if err := writeMemberConfig(c); err != nil {
			return nil, err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	ms := &memberSet{ctx: mctx, wg: &wg, exe: exe, sec: sec, base: base, gid: gid, cluster: cluster, testCommands: f.testCommands,
		forget: func(member string) error { return p.cp.Svc.ForgetNode(gid, cluster, member) }}
	for i, c := range cfgs {
		mp, started := ms.startProc(c)
		ms.procs = append(ms.procs, mp)
		if err := <-started; err != nil {
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("member %d: %w", i, err)
		}
	}
	ms.uri = replConnectionString(cfgs[0].Replication, sec.auth != nil, sec.tls != nil, sec.caFile)
	done := make(chan error, 1)
	rn := &runningNode{done: done, info: upInfo{ConnectionString: ms.uri, Dir: f.dir, PID: os.Getpid(), StartedAt: time.Now().UTC(),
		State: fmt.Sprintf("replica set %s of %d members (each its own process: see %s)", cfgs[0].Replication.SetName, n, base),
		TLS:   sec.tls != nil, TLSCAFile: sec.caFile}}
	if sec.auth != nil {
		rn.info.Auth, rn.info.AdminUser = true, sec.auth.AdminUser
		if f.security.adminPasswordFile != "" {
			rn.info.AdminPasswordFile = f.security.adminPasswordFile
		} else {
			rn.info.AdminPassword = sec.password
		}
	}
	if first := readUpInfo(node.Layout{Dir: cfgs[0].Dir}); first.CMK != "" {
		rn.info.CMK = first.CMK // every member's master key is wrapped by the project's CMK
	}
	rn.stop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
	rn.members = ms
	return rn, nil
}

// startProc starts and supervises member c's process; started reports
// its first start.
func (ms *memberSet) startProc(c *config.Config) (*memberProc, <-chan error) {
	pctx, pcancel := context.WithCancel(ms.ctx)
	var args []string
	if ms.testCommands {
		args = append(args, "--enable-test-commands")
	}
	mp := &memberProc{name: c.Replication.Me, dir: c.Dir, cfgFile: filepath.Join(c.Dir, "node.json"), args: args,
		log: slog.Default().With("member", c.Replication.Me), cancel: pcancel, done: make(chan struct{})}
	started := make(chan error, 1)
	ms.wg.Add(1)
	go func() {
		defer ms.wg.Done()
		defer close(mp.done)
		mp.supervise(pctx, ms.exe, started)
	}()
	return mp, started
}

// memberConfigs returns every member's configuration, writing it (ports,
// certificates) on the first run.
func (p *upProvisioner) memberConfigs(gid, cluster string, n int, base string, first bool) ([]*config.Config, error) {
	f := p.f
	var cfgs []*config.Config
	existing := 0
	for i := 0; i < n; i++ {
		c, err := config.Load(filepath.Join(base, "m"+strconv.Itoa(i), "node.json"))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
		cfgs = append(cfgs, c)
		existing++
	}
	if existing == n {
		if _, err := os.Stat(filepath.Join(base, "m"+strconv.Itoa(n))); err == nil {
			return nil, fmt.Errorf("%s has more than %d members: start it with its own --nodes", base, n)
		}
		// The key service listens on a new port each run: point the
		// members at this run's.
		for _, c := range cfgs {
			// A member's files are readable only the way they were
			// written: encrypted, or (bench only) not.
			if c.InsecureNoEncryption != f.plaintext {
				return nil, fmt.Errorf("%s was created with insecureNoEncryption %v: start it with the same --insecure-no-encryption", c.Dir, c.InsecureNoEncryption)
			}
			if c.KMS.ControlPlane == nil {
				return nil, fmt.Errorf("%s: a member of up's replica set reaches its CMK through the control plane", c.Dir)
			}
			c.KMS.ControlPlane.URL, c.KMS.ControlPlane.CAFile = p.cp.KeyServiceURL, p.cp.CAFile
			c.SnapshotDir = p.snapDir
			f.oplog.apply(c.Replication)
			if err := writeMemberConfig(c); err != nil {
				return nil, err
			}
		}
		return cfgs, nil
	}
	if existing > 0 {
		return nil, fmt.Errorf("%s has %d members, not %d: Cluster0's member count is --nodes; start it with --nodes %d", base, existing, n, existing)
	}
	// First run: ports, certificates and configuration files.
	repl := &config.Replication{SetName: cluster, Project: gid}
	f.oplog.apply(repl)
	hostIP := hostOf(f.bind)
	for i := 0; i < n; i++ {
		port := 0
		if first && f.port != 0 {
			port = f.port + i
		}
		wirePort, err := freePortOn(hostIP, port)
		if err != nil {
			return nil, fmt.Errorf("member m%d's port: %w", i, err)
		}
		raftPort, err := freePortOn(hostIP, 0)
		if err != nil {
			return nil, err
		}
		repl.Members = append(repl.Members, config.ReplMember{Name: "m" + strconv.Itoa(i),
			Host: net.JoinHostPort(hostIP, strconv.Itoa(wirePort)), RaftAddr: net.JoinHostPort(hostIP, strconv.Itoa(raftPort))})
	}
	for i := 0; i < n; i++ {
		name := "m" + strconv.Itoa(i)
		dir := filepath.Join(base, name)
		pki := filepath.Join(dir, "pki")
		if err := os.MkdirAll(pki, 0o700); err != nil {
			return nil, err
		}
		nodeCert, nodeKey, err := cpserver.IssueNodeCert(p.cp.CA, controlplane.NodeID{GroupID: gid, Cluster: cluster, Name: name}, pki)
		if err != nil {
			return nil, err
		}
		certPEM, keyPEM, err := p.cp.CA.MemberCertificate(transport.Identity{Project: gid, Cluster: cluster, Member: name}.CommonName(), []string{hostIP}, 2*365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		memberCert, memberKey := filepath.Join(pki, "member.pem"), filepath.Join(pki, "member-key.pem")
		if err := durable.WriteFile(memberKey, keyPEM, 0o600); err != nil {
			return nil, err
		}
		clear(keyPEM)
		if err := durable.WriteFile(memberCert, certPEM, 0o600); err != nil {
			return nil, err
		}
		r := *repl
		r.Me, r.CertFile, r.KeyFile, r.CAFile = name, memberCert, memberKey, p.cp.CAFile
		port, _ := strconv.Atoi(r.Members[i].Host[len(hostIP)+1:])
		c := &config.Config{Dir: dir, Bind: f.bind, Port: port, KeyCheckInterval: config.Duration{Duration: max(f.checkInterval, config.MinKeyCheckInterval)},
			KMS: config.KMS{Provider: "controlplane", ControlPlane: &config.ControlPlaneKMS{URL: p.cp.KeyServiceURL, CAFile: p.cp.CAFile,
				CertFile: nodeCert, KeyFile: nodeKey, GroupID: gid, Cluster: cluster}},
			Replication: &r, InsecureNoEncryption: f.plaintext, SnapshotDir: p.snapDir}
		if err := writeMemberConfig(c); err != nil {
			return nil, err
		}
		cfgs = append(cfgs, c)
	}
	return cfgs, nil
}

func writeMemberConfig(c *config.Config) error {
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(c.Dir, "node.json"), append(js, '\n'), 0o600)
}

// memberSecurity is what --tls and --auth give every member: the
// server certificate (up's local CA, or --tls-cert-file), and the
// administrator the primary creates, whose password every member reads
// from a file (--admin-password-file, or one drawn on the first run and
// kept, 0600, in the members' directory and up.json).
type memberSecurity struct {
	tls      *config.TLS
	caFile   string
	auth     *config.Auth
	password string // a drawn password, for up.json
}

func (p *upProvisioner) memberSecurity(base string) (memberSecurity, error) {
	f := p.f
	var ms memberSecurity
	switch {
	case f.security.tlsCertFile != "":
		cert, err1 := filepath.Abs(f.security.tlsCertFile)
		key, err2 := filepath.Abs(f.security.tlsKeyFile)
		if err := errors.Join(err1, err2); err != nil {
			return ms, err
		}
		ms.tls = &config.TLS{CertFile: cert, KeyFile: key, CAFile: f.security.tlsCAFile}
	case f.security.tls:
		// The same local CA and server certificate up's admin API uses
		// (serverTLS): every member listens on the same host.
		_, ca, err := f.security.serverTLS(node.Layout{Dir: f.dir}, f.bind)
		if err != nil {
			return ms, err
		}
		files := tlsutil.FilesIn(filepath.Join(f.dir, "tls"))
		cert, err1 := filepath.Abs(files.CertFile)
		key, err2 := filepath.Abs(files.KeyFile)
		if err := errors.Join(err1, err2); err != nil {
			return ms, err
		}
		ms.tls, ms.caFile = &config.TLS{CertFile: cert, KeyFile: key, CAFile: f.security.tlsCAFile}, ca
	}
	if !f.security.auth {
		return ms, nil
	}
	pwFile := f.security.adminPasswordFile
	if pwFile == "" {
		pwFile = filepath.Join(base, "admin-password")
		if _, err := os.Stat(pwFile); errors.Is(err, os.ErrNotExist) {
			b := make([]byte, 24)
			if _, err := rand.Read(b); err != nil {
				return ms, err
			}
			if err := durable.WriteFile(pwFile, []byte(base64.RawURLEncoding.EncodeToString(b)), 0o600); err != nil {
				return ms, err
			}
		}
		pw, err := readPasswordFile(pwFile)
		if err != nil {
			return ms, err
		}
		ms.password = pw
	}
	abs, err := filepath.Abs(pwFile)
	if err != nil {
		return ms, err
	}
	ms.auth = &config.Auth{Enabled: true, AdminUser: f.security.adminUser, AdminPasswordFile: abs}
	return ms, nil
}

// freePortOn returns port if it can be bound on host (0: a free one).
func freePortOn(host string, port int) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// supervise runs the member's process until ctx ends, starting it again
// when it exits on its own. The first start is reported on started once
// the member wrote its up.json (or failed).
func (mp *memberProc) supervise(ctx context.Context, exe string, started chan<- error) {
	first := true
	for {
		err := mp.runOnce(ctx, exe, func(err error) {
			if first {
				started <- err
				first = false
			}
		})
		if ctx.Err() != nil {
			return
		}
		if first {
			started <- err
			return
		}
		mp.log.Warn("replica set member exited; starting it again", "err", err, "log", filepath.Join(mp.dir, "node.log"))
		if !sleepCtx(ctx, time.Second) {
			return
		}
	}
}

// runOnce starts the process, reports when it serves, and waits for it
// to exit; when ctx ends it is asked to stop (SIGINT), then killed.
func (mp *memberProc) runOnce(ctx context.Context, exe string, ready func(error)) error {
	// The child gets SIGTERM if this process dies (Pdeathsig is per OS
	// thread: this goroutine keeps its thread until the child exits).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	logf, err := os.OpenFile(filepath.Join(mp.dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	_ = os.Remove(filepath.Join(mp.dir, "up.json"))
	cmd := exec.Command(exe, append([]string{"node", "--config", mp.cfgFile}, mp.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	readyCh := make(chan error, 1)
	go func() { readyCh <- waitUpFile(ctx, filepath.Join(mp.dir, "up.json"), cmd.Process.Pid, exited) }()
	select {
	case err := <-readyCh:
		ready(err)
		if err != nil {
			_ = cmd.Process.Kill()
			return err
		}
	case <-ctx.Done():
	}
	select {
	case err := <-exited:
		return fmt.Errorf("exited: %v", err)
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		return nil
	}
}

// waitUpFile waits until the member's up.json names its process.
func waitUpFile(ctx context.Context, path string, pid int, exited <-chan error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			var info upInfo
			if json.Unmarshal(b, &info) == nil && info.PID == pid {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before serving: %v (see %s)", err, filepath.Join(filepath.Dir(path), "node.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("did not serve within 2 minutes (see %s)", filepath.Join(filepath.Dir(path), "node.log"))
}
