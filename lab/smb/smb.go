// Package smb is the SMB side of the lab, the cousin of the NFS one: the Samba server a backend
// pod runs, and the options with which the kernel's CIFS client mounts the service VIP.
//
// The CIFS client keeps the server's address in its own struct (server->dstaddr) and, since
// "smb: use kernel_connect() and kernel_bind()", connects through kernel_connect(), which on a
// fixed kernel hands the socket-LB hook a copy. A kernel whose SMB client calls the socket's
// connect directly (before that commit, or the partial-6.1 recipe) lets the hook overwrite the
// client's only copy: the same bug as NFS's, through another door.
package smb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"

	"github.com/nfslab/nfslab/lab/nfs"
)

// What every SMB cell uses.
const (
	Port    = 445      // the SMB port, the service's only port
	Share   = "export" // the share's name
	Dialect = "smb3"   // the scenario's version value for SMB cells (the client mounts vers=3.1.1)
	// User and Password are the share's credentials: a lab-local account of the guest, which
	// has no other user and no network beyond the lab's own namespaces.
	User     = "root"
	Password = "nfslab"
)

// Binaries the server side runs, looked up in PATH.
const (
	SmbdBinary      = "smbd"
	SmbpasswdBinary = "smbpasswd"
)

// ServerParams configure one smbd.
type ServerParams struct {
	BindAddr   netip.Addr // the pod's IP: smbd binds it alone
	ExportPath string     // the directory the share serves
	StateDir   string     // this server's run, lock, state, cache and log directories
	PrivateDir string     // the account database, shared by every pod of a cell
}

const configText = `# nfslab: one smbd per backend pod.
[global]
	server role = standalone server
	interfaces = {{.BindAddr}}
	bind interfaces only = yes
	smb ports = 445
	disable netbios = yes
	server min protocol = SMB3_00
	passdb backend = tdbsam
	private dir = {{.PrivateDir}}
	pid directory = {{.StateDir}}/run
	lock directory = {{.StateDir}}/lock
	state directory = {{.StateDir}}/state
	cache directory = {{.StateDir}}/cache
	ncalrpc dir = {{.StateDir}}/ncalrpc
	log file = {{.StateDir}}/log.smbd
	log level = 1
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes
	map to guest = never
	kernel oplocks = no

[` + Share + `]
	path = {{.ExportPath}}
	read only = no
	force user = root
	create mask = 0666
`

// RenderConfig renders smb.conf for p.
func RenderConfig(p ServerParams) (string, error) {
	if !p.BindAddr.IsValid() {
		return "", errors.New("smb.conf: bind address is not set")
	}
	for name, dir := range map[string]string{"export path": p.ExportPath, "state directory": p.StateDir, "private directory": p.PrivateDir} {
		if !filepath.IsAbs(dir) || strings.ContainsAny(dir, "\n\r") {
			return "", fmt.Errorf("smb.conf: %s %q: want an absolute path on one line", name, dir)
		}
	}
	tmpl, err := template.New("smb.conf").Parse(configText)
	if err != nil {
		return "", fmt.Errorf("smb.conf template: %w", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, p); err != nil {
		return "", fmt.Errorf("smb.conf: %w", err)
	}
	return b.String(), nil
}

// StateDirs are the directories under a server's state directory that smbd expects to exist.
func StateDirs() []string { return []string{"run", "lock", "state", "cache", "ncalrpc"} }

// Start starts smbd with confPath in the network namespace netnsName, through wrapper (see
// nfs.StartInNetns): in the foreground, logging to stdout, in the process group nfslab gives it,
// so that killing the server kills the children it forked for each connection.
func Start(ctx context.Context, netnsName string, wrapper []string, confPath string) (*nfs.Process, error) {
	p, err := nfs.StartInNetns(ctx, netnsName, wrapper, SmbdBinary, "--foreground", "--no-process-group", "--debug-stdout", "-s", confPath)
	if err != nil {
		return nil, fmt.Errorf("start smbd in netns %q: %w", netnsName, err)
	}
	return p, nil
}

// AddUserArgs is the command that creates the share's account in the database confPath names
// (smbpasswd reads the password twice from standard input, given by AddUserInput).
func AddUserArgs(confPath string) []string {
	return []string{SmbpasswdBinary, "-c", confPath, "-s", "-a", User}
}

// AddUserInput is what smbpasswd -s reads: the password and its confirmation.
func AddUserInput() string { return Password + "\n" + Password + "\n" }

// Redact hides the password in mount data, for progress lines and reports.
func Redact(data string) string {
	return strings.ReplaceAll(data, "password="+Password, "password=…")
}

// ExplainMountError adds what a mount(2) error of the CIFS client usually means.
func ExplainMountError(err error) error {
	switch {
	case errors.Is(err, syscall.ENODEV):
		return fmt.Errorf("%w: this kernel has no SMB client (CONFIG_CIFS)", err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%w: the server refused the lab's account", err)
	}
	return err
}

// MountOptions builds the source, fstype and text mount data for mount(2) of the share at the
// service address server, with the kernel CIFS client:
//
//	//<server>/export  cifs  ip=<server>,port=445,vers=3.1.1,username=root,password=…
//
// ip= spares the kernel a name lookup. extra follows (e.g. "hard"); it must not repeat an
// option MountOptions sets, and no item may be empty or contain a comma or white space.
func MountOptions(server netip.Addr, extra []string) (source, fstype, data string, err error) {
	if !server.IsValid() {
		return "", "", "", errors.New("smb mount options: server address is not set")
	}
	server = server.Unmap()
	for _, opt := range extra {
		key, _, _ := strings.Cut(opt, "=")
		switch strings.ToLower(key) {
		case "ip", "addr", "port", "vers", "username", "user", "password", "pass", "unc":
			return "", "", "", fmt.Errorf("smb mount options: extra option %q overrides one MountOptions sets", opt)
		}
		if opt == "" || strings.ContainsAny(opt, ", \t\n\r") {
			return "", "", "", fmt.Errorf("smb mount options: invalid extra option %q", opt)
		}
	}
	host := server.String()
	if server.Is6() {
		host = "[" + host + "]"
	}
	parts := []string{"ip=" + server.String(), fmt.Sprintf("port=%d", Port), "vers=3.1.1", "username=" + User, "password=" + Password}
	return "//" + host + "/" + Share, "cifs", strings.Join(append(parts, extra...), ","), nil
}
