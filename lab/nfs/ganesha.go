package nfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/nfslab/nfslab/manifests"
)

// GaneshaTemplate is the name of the configuration template in manifests.FS.
const GaneshaTemplate = "ganesha.conf.tmpl"

// Defaults RenderGaneshaConfig applies to zero fields of GaneshaParams.
const (
	DefaultNFSPort      = 2049
	DefaultLeaseSeconds = 10 // short leases make a replaced server usable sooner
	DefaultProtocols    = "4"
	DefaultLogLevel     = "EVENT"
)

// GaneshaParams are the knobs of one nfs-ganesha instance (one "pod").
type GaneshaParams struct {
	BindAddr     netip.Addr // the pod's IP; ganesha listens only there (required)
	Port         int        // NFS port; 0 means 2049
	ExportPath   string     // directory exported (required, absolute, on a filesystem with file handles, e.g. tmpfs)
	PseudoPath   string     // NFSv4 pseudo path clients mount (VIP:/PseudoPath); "" means ExportPath
	RecoveryRoot string     // per-instance NFSv4 recovery directory (required, absolute)

	// LeaseSeconds is NFSv4 Lease_Lifetime (0 means 10; ganesha accepts up to 180).
	LeaseSeconds int
	// GracePeriodSeconds is NFSv4 Grace_Period; 0 leaves ganesha's default (ganesha accepts up to
	// 270). Irrelevant while Graceless is in effect.
	GracePeriodSeconds int
	// EnableGrace turns the grace period on. The zero value renders "Graceless = true": a
	// replacement server accepts new opens at once instead of waiting out a grace period, which
	// would otherwise add up to Grace_Period seconds to every measured recovery time.
	EnableGrace bool

	// Protocols is the NFS protocol list for NFS_CORE_PARAM and the export, e.g. "4" (the
	// default) or "3, 4" (see ServerProtocols). NLM and RQUOTA are always off (clients mount
	// with nolock). With NFSv3, mountd listens on MountdPort, and NFSv3 MOUNT requests name the
	// Pseudo path (Mount_Path_Pseudo), so clients of every version mount the same path; and
	// ganesha.nfsd then exits at start-up unless it can register with an rpcbind (StartRPCBind).
	Protocols string
	// EnableUDP makes the server listen on UDP too (NFS and mountd ports, Transports = TCP, UDP;
	// TCP is always served). Only with NFSv3 in Protocols: NFSv4 does not run over UDP.
	EnableUDP bool
	// MountdPort is mountd's port (MNT_Port) when Protocols has NFSv3; 0 means MountdPort.
	MountdPort int

	// LogPath, when set, adds a FILE log facility writing there (the same file as -L).
	LogPath string
	// LogLevel is LOG's Default_Log_Level (NULL, FATAL, MAJ, CRIT, WARN, EVENT, INFO, DEBUG,
	// MID_DEBUG, FULL_DEBUG); "" means EVENT.
	LogLevel string
}

// templateData is what the template sees: GaneshaParams with defaults applied and derived fields.
type templateData struct {
	GaneshaParams
	Graceless  bool
	V3         bool   // Protocols includes NFSv3: mountd and its settings
	Transports string // the export's Transports list
}

// validLogLevel reports whether l is one of ganesha's log level names.
func validLogLevel(l string) bool {
	switch l {
	case "NULL", "FATAL", "MAJ", "CRIT", "WARN", "EVENT", "INFO", "DEBUG", "MID_DEBUG", "M_DBG", "FULL_DEBUG", "F_DBG":
		return true
	}
	return false
}

// RenderGaneshaConfig renders manifests/ganesha.conf.tmpl for p, after applying the defaults and
// checking every field that ends up in the file (paths must be absolute and free of quotes,
// backslashes and control characters, numbers within ganesha's ranges).
func RenderGaneshaConfig(p GaneshaParams) (string, error) {
	if !p.BindAddr.IsValid() {
		return "", errors.New("ganesha config: BindAddr is not set")
	}
	p.BindAddr = p.BindAddr.Unmap()
	if p.Port == 0 {
		p.Port = DefaultNFSPort
	}
	if p.PseudoPath == "" {
		p.PseudoPath = p.ExportPath
	}
	if p.LeaseSeconds == 0 {
		p.LeaseSeconds = DefaultLeaseSeconds
	}
	if p.Protocols == "" {
		p.Protocols = DefaultProtocols
	}
	if p.LogLevel == "" {
		p.LogLevel = DefaultLogLevel
	}
	if p.MountdPort == 0 {
		p.MountdPort = MountdPort
	}
	for _, f := range []struct{ name, val string }{
		{"ExportPath", p.ExportPath}, {"PseudoPath", p.PseudoPath}, {"RecoveryRoot", p.RecoveryRoot},
	} {
		if err := checkConfPath(f.name, f.val); err != nil {
			return "", err
		}
	}
	if p.LogPath != "" {
		if err := checkConfPath("LogPath", p.LogPath); err != nil {
			return "", err
		}
	}
	if p.Port < 1 || p.Port > 65535 {
		return "", fmt.Errorf("ganesha config: Port %d out of range 1..65535", p.Port)
	}
	if p.MountdPort < 1 || p.MountdPort > 65535 {
		return "", fmt.Errorf("ganesha config: MountdPort %d out of range 1..65535", p.MountdPort)
	}
	if p.LeaseSeconds < 1 || p.LeaseSeconds > 180 {
		return "", fmt.Errorf("ganesha config: LeaseSeconds %d out of range 1..180", p.LeaseSeconds)
	}
	if p.GracePeriodSeconds < 0 || p.GracePeriodSeconds > 270 {
		return "", fmt.Errorf("ganesha config: GracePeriodSeconds %d out of range 0..270", p.GracePeriodSeconds)
	}
	if !validLogLevel(p.LogLevel) {
		return "", fmt.Errorf("ganesha config: unknown LogLevel %q", p.LogLevel)
	}
	protos, err := normalizeProtocols(p.Protocols)
	if err != nil {
		return "", err
	}
	p.Protocols = protos
	v3 := protos != "4"
	if p.EnableUDP && !v3 {
		return "", fmt.Errorf("ganesha config: EnableUDP needs NFSv3 in Protocols (%q): NFSv4 does not run over UDP", protos)
	}
	if v3 && p.MountdPort == p.Port {
		return "", fmt.Errorf("ganesha config: MountdPort and Port are both %d", p.Port)
	}
	transports := "TCP"
	if p.EnableUDP {
		transports = "TCP, UDP"
	}

	text, err := manifests.FS.ReadFile(GaneshaTemplate)
	if err != nil {
		return "", fmt.Errorf("ganesha config: %w", err)
	}
	tmpl, err := template.New(GaneshaTemplate).Option("missingkey=error").
		Funcs(template.FuncMap{"quote": func(s string) string { return `"` + s + `"` }}).
		Parse(string(text))
	if err != nil {
		return "", fmt.Errorf("ganesha config: parse template: %w", err)
	}
	var out bytes.Buffer
	data := templateData{GaneshaParams: p, Graceless: !p.EnableGrace, V3: v3, Transports: transports}
	if err := tmpl.Execute(&out, data); err != nil {
		return "", fmt.Errorf("ganesha config: render: %w", err)
	}
	return out.String(), nil
}

func checkConfPath(name, p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("ganesha config: %s %q is not an absolute path", name, p)
	}
	for _, r := range p {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("ganesha config: %s %q contains a character the config file cannot carry", name, p)
		}
	}
	return nil
}

// normalizeProtocols accepts a comma-separated list of 3 and 4 ("v4", "nfs4", "NFSv4" too) and
// returns it as "3, 4" / "4" / "3".
func normalizeProtocols(s string) (string, error) {
	var have3, have4 bool
	for tok := range strings.SplitSeq(s, ",") {
		switch strings.ToLower(strings.TrimSpace(tok)) {
		case "3", "v3", "nfs3", "nfsv3":
			have3 = true
		case "4", "v4", "nfs4", "nfsv4":
			have4 = true
		default:
			return "", fmt.Errorf("ganesha config: unsupported protocol %q in Protocols %q", strings.TrimSpace(tok), s)
		}
	}
	switch {
	case have3 && have4:
		return "3, 4", nil
	case have3:
		return "3", nil
	default:
		return "4", nil
	}
}

// GaneshaBinary and IPBinary are the programs StartGanesha runs, looked up in PATH.
const (
	GaneshaBinary = "ganesha.nfsd"
	IPBinary      = "ip"
)

// maxOutput bounds how much of a process's stdout+stderr a Process keeps.
const maxOutput = 64 << 10

// Process is a program the lab started and owns until Kill (an nfs-ganesha instance).
type Process struct {
	cmd  *exec.Cmd
	out  *cappedBuffer
	done chan struct{} // closed once the process has been reaped
	err  error         // Wait's result; read only after done is closed
}

// StartGanesha starts nfs-ganesha in the network namespace netnsName (created with
// `ip netns add`; "" runs it in the caller's namespace) as
//
//	ip netns exec <netnsName> ganesha.nfsd -F -f <confPath> -L <logPath> -N NIV_EVENT -p <pidPath>
//
// -F keeps ganesha in the foreground, and `ip netns exec` execs it in place, so the returned
// Process is the ganesha process itself and Kill hits it directly. ctx bounds only the start:
// the server keeps running after ctx ends, until Kill. Its stdout and stderr (the first 64 KiB)
// are kept for Output; ganesha's own log goes to logPath. The server is not ready when
// StartGanesha returns: wait until it listens (lab/cluster/netns watches the pod's sockets).
//
// wrapper, when given, is a command that `ip netns exec` runs instead of ganesha and that must
// exec ganesha with the remaining arguments (the agent uses it to give the pod a mount namespace
// without the node's NFS mounts).
func StartGanesha(ctx context.Context, netnsName string, wrapper []string, confPath, logPath, pidPath string) (*Process, error) {
	p, err := StartInNetns(ctx, netnsName, wrapper, GaneshaBinary, "-F", "-f", confPath, "-L", logPath, "-N", "NIV_EVENT", "-p", pidPath)
	if err != nil {
		return nil, fmt.Errorf("start ganesha in netns %q: %w", netnsName, err)
	}
	return p, nil
}

// StartInNetns starts a server program in the network namespace netnsName ("" for the caller's)
// as `ip netns exec <netnsName> [wrapper…] <program> <args…>`, which execs in place: the returned
// Process is the server itself, the leader of its own process group, and Kill kills the group
// (a server that forks a child per connection, like smbd, dies whole). See StartGanesha for
// wrapper and for what ctx bounds.
func StartInNetns(ctx context.Context, netnsName string, wrapper []string, program string, args ...string) (*Process, error) {
	argv := append(append(append([]string{}, wrapper...), program), args...)
	name, rest := argv[0], argv[1:]
	if netnsName != "" {
		rest = append([]string{"netns", "exec", netnsName, name}, rest...)
		name = IPBinary
	}
	return startProcess(ctx, name, rest...)
}

// RPCBindBinary is the portmapper StartRPCBind runs, looked up in PATH, and RPCBindSocket the
// local socket through which servers register with it (libtirpc tries it before 127.0.0.1:111).
const (
	RPCBindBinary = "rpcbind"
	RPCBindSocket = "/run/rpcbind.sock"
)

// StartRPCBind makes sure an rpcbind answers on RPCBindSocket, which nfs-ganesha needs to start
// with NFSv3 enabled: it registers every program it serves and exits right after
// "Cannot register NFS V3 on TCP" when it cannot (for NFSv4 alone the same failure is only
// logged). No client ever asks this rpcbind anything: MountOptions gives the kernel the ports.
//
// When an rpcbind already answers, StartRPCBind starts nothing and returns a nil Process.
// Otherwise it starts `rpcbind -f` (foreground, so the Process is rpcbind itself and Kill stops
// it) in the caller's network namespace and returns once the socket answers, or fails when
// rpcbind exits first (it refuses to run while another holds /run/rpcbind.lock) or ctx ends.
//
// One rpcbind on the node serves every pod: the registration goes through the file-system
// socket, which is not bound to a network namespace, and a pod's mount namespace (a copy of the
// node's) sees it. A replacement pod's ganesha replaces the dead one's registrations. A
// per-pod rpcbind would need a private /run in each pod (rpcbind's socket and lock file have
// fixed paths there).
func StartRPCBind(ctx context.Context) (*Process, error) {
	if rpcbindAnswers() {
		return nil, nil
	}
	p, err := startProcess(ctx, RPCBindBinary, "-f")
	if err != nil {
		return nil, fmt.Errorf("start rpcbind: %w", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !rpcbindAnswers() {
		select {
		case <-p.Done():
			return nil, fmt.Errorf("start rpcbind: exited: %v: %s", p.ExitErr(), strings.TrimSpace(p.Output()))
		case <-ctx.Done():
			_ = p.Kill(context.Background())
			return nil, fmt.Errorf("start rpcbind: %s does not answer: %w", RPCBindSocket, ctx.Err())
		case <-tick.C:
		}
	}
	return p, nil
}

// rpcbindAnswers reports whether something accepts connections on RPCBindSocket (a socket file
// left behind by a dead rpcbind refuses them).
func rpcbindAnswers() bool {
	c, err := net.DialTimeout("unix", RPCBindSocket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func startProcess(ctx context.Context, name string, args ...string) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := &cappedBuffer{max: maxOutput}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Wait must return once the process is gone even if something it spawned still holds the
	// output pipe open.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and been reaped (after Kill, or on its own: a
// ganesha that rejects its configuration exits within a second or two).
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is how the process ended (nil for exit status 0); only meaningful once Done is closed.
func (p *Process) ExitErr() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Output returns what the process wrote to stdout and stderr so far (at most 64 KiB).
func (p *Process) Output() string { return p.out.String() }

// Kill sends SIGKILL to the process's group (the fault "the backend died": the server and any
// child it forked) and waits until the process is reaped, or until ctx ends. Killing a process
// that already exited is not an error.
func (p *Process) Kill(ctx context.Context) error {
	select {
	case <-p.done:
		return nil // reaped: its process group ID may belong to someone else by now
	default:
	}
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", p.Pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kill pid %d: not reaped (%s): %w", p.Pid(), TaskStates(p.Pid()), ctx.Err())
	}
}

// TaskStates describes the threads of a process that are not running or sleeping
// interruptibly: state letter and kernel wait channel, e.g. "D nfs4_wait_clnt_recover". It is
// diagnosis for a process that does not die.
func TaskStates(pid int) string {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	var out []string
	for _, t := range tasks {
		stat, err := os.ReadFile(filepath.Join(t, "stat"))
		if err != nil {
			continue
		}
		// The state follows the parenthesised command name, which may itself contain spaces.
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 && i+2 < len(rest) {
			rest = rest[i+2:]
		}
		state := strings.SplitN(rest, " ", 2)[0]
		if state == "S" || state == "R" {
			continue
		}
		wchan, _ := os.ReadFile(filepath.Join(t, "wchan"))
		out = append(out, fmt.Sprintf("tid %s %s %s", filepath.Base(t), state, strings.TrimSpace(string(wchan))))
	}
	if len(out) == 0 {
		return "no blocked threads"
	}
	return strings.Join(out, "; ")
}

// cappedBuffer keeps the first max bytes written to it and discards the rest; safe for the
// concurrent writes of exec's stdout and stderr copiers and concurrent reads.
type cappedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
