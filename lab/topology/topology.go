// Package topology builds the lab's network inside the VM: the root network namespace is the
// "node" (the kernel NFS client lives there), a bridge gives it the node address, a dummy device
// routes the service CIDR the way kube-proxy's nodes do, and every backend "pod" is a named
// network namespace with a veth into the bridge.
package topology

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Node is the node side of the topology: the bridge pods attach to and the service route.
type Node struct {
	Bridge      string       // bridge device name
	Addr        netip.Prefix // the node's address on the bridge, e.g. 10.0.0.1/24
	ServiceDev  string       // dummy device the service CIDR is routed to
	ServiceCIDR netip.Prefix // e.g. 10.96.0.0/12
}

// Pod is a backend pod: a named network namespace with one address.
type Pod struct {
	Name    string     // netns name (usable with `ip netns exec`)
	Addr    netip.Addr // pod IP
	hostDev string     // host end of the veth
}

// Setup creates the bridge and the service dummy device in the current (root) namespace.
func (n Node) Setup() error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
	}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: prefixNet(n.Addr)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", n.Addr, n.Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up %s: %w", n.Bridge, err)
	}
	dummy := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: n.ServiceDev}}
	if err := netlink.LinkAdd(dummy); err != nil {
		return fmt.Errorf("create service device %s: %w", n.ServiceDev, err)
	}
	if err := netlink.LinkSetUp(dummy); err != nil {
		return fmt.Errorf("bring up %s: %w", n.ServiceDev, err)
	}
	route := &netlink.Route{LinkIndex: dummy.Attrs().Index, Dst: prefixNet(n.ServiceCIDR.Masked())}
	if err := netlink.RouteAdd(route); err != nil {
		return fmt.Errorf("route %s via %s: %w", n.ServiceCIDR, n.ServiceDev, err)
	}
	return nil
}

// Teardown removes the bridge and the service device. Missing devices are not an error.
func (n Node) Teardown() error {
	var errs []error
	for _, name := range []string{n.ServiceDev, n.Bridge} {
		link, err := netlink.LinkByName(name)
		if err != nil {
			continue
		}
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// AddPod creates the pod's namespace, a veth pair with eth0 inside it at addr (same prefix
// length as the node), a default route via the node, and attaches the host end to the bridge.
func (n Node) AddPod(name, hostDev string, addr netip.Addr) (*Pod, error) {
	pod := &Pod{Name: name, Addr: addr, hostDev: hostDev}
	if err := n.addPod(pod); err != nil {
		_ = pod.Delete()
		return nil, fmt.Errorf("create pod %s (%s): %w", name, addr, err)
	}
	return pod, nil
}

func (n Node) addPod(pod *Pod) error {
	ns, err := newNamedNetns(pod.Name)
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer ns.Close()

	peer := "p-" + pod.hostDev
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pod.hostDev}, PeerName: peer}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", pod.hostDev, err)
	}
	peerLink, err := netlink.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("find veth peer %s: %w", peer, err)
	}
	if err := netlink.LinkSetNsFd(peerLink, int(ns)); err != nil {
		return fmt.Errorf("move %s into %s: %w", peer, pod.Name, err)
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", n.Bridge, err)
	}
	host, err := netlink.LinkByName(pod.hostDev)
	if err != nil {
		return fmt.Errorf("find %s: %w", pod.hostDev, err)
	}
	if err := netlink.LinkSetMaster(host, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", pod.hostDev, n.Bridge, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring up %s: %w", pod.hostDev, err)
	}

	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", pod.Name, err)
	}
	defer h.Close()
	inner, err := h.LinkByName(peer)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", peer, pod.Name, err)
	}
	if err := h.LinkSetName(inner, "eth0"); err != nil {
		return fmt.Errorf("rename %s to eth0: %w", peer, err)
	}
	podPrefix := netip.PrefixFrom(pod.Addr, n.Addr.Bits())
	if err := h.AddrAdd(inner, &netlink.Addr{IPNet: prefixNet(podPrefix)}); err != nil {
		return fmt.Errorf("address %s: %w", podPrefix, err)
	}
	if err := h.LinkSetUp(inner); err != nil {
		return fmt.Errorf("bring up eth0: %w", err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	gw := net.IP(n.Addr.Addr().AsSlice())
	if err := h.RouteAdd(&netlink.Route{LinkIndex: inner.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// Delete removes the pod's network namespace and its veth (deleting the host end removes both
// ends). Processes still running in the namespace are the caller's to kill first.
func (p *Pod) Delete() error {
	var errs []error
	if link, err := netlink.LinkByName(p.hostDev); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete veth %s: %w", p.hostDev, err))
		}
	}
	err := netns.DeleteNamed(p.Name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.EINVAL) {
		errs = append(errs, fmt.Errorf("delete netns %s: %w", p.Name, err))
	}
	return errors.Join(errs...)
}

// Unplug takes the node's end of the pod's veth down: from then on the pod's traffic is dropped
// silently in both directions (its FINs and RSTs never reach the node), as when its node dies.
func (p *Pod) Unplug() error {
	link, err := netlink.LinkByName(p.hostDev)
	if err != nil {
		return fmt.Errorf("find veth %s: %w", p.hostDev, err)
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("take veth %s down: %w", p.hostDev, err)
	}
	return nil
}

// OpenConnections counts the TCP connections still open (not LISTEN, TIME-WAIT or CLOSE) in the
// pod's network namespace, reading /proc/thread-self/net/tcp{,6} from a thread moved into it.
func (p *Pod) OpenConnections(count func(io.Reader) (int, error)) (int, error) {
	ns, err := netns.GetFromName(p.Name)
	if err != nil {
		return 0, fmt.Errorf("open netns %s: %w", p.Name, err)
	}
	defer ns.Close()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{0, err}
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			done <- result{0, fmt.Errorf("enter netns %s: %w", p.Name, err)}
			return
		}
		total := 0
		var rerr error
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			fh, err := os.Open(f)
			if err != nil {
				continue // no IPv6
			}
			n, err := count(fh)
			fh.Close()
			if err != nil {
				rerr = err
			}
			total += n
		}
		if netns.Set(orig) == nil { // else the thread dies with the goroutine, still locked
			runtime.UnlockOSThread()
		}
		done <- result{total, rerr}
	}()
	r := <-done
	return r.n, r.err
}

// newNamedNetns creates a named network namespace without leaving the calling goroutine's
// thread inside it.
// The work happens on a dedicated, locked OS thread; if that thread cannot return to the root
// namespace it is left locked, so the runtime retires it instead of reusing it.
func newNamedNetns(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{netns.None(), fmt.Errorf("current netns: %w", err)}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			done <- result{netns.None(), fmt.Errorf("create %s: %w", name, err)}
			return
		}
		if err := netns.Set(orig); err != nil {
			ns.Close()
			done <- result{netns.None(), fmt.Errorf("return to the root netns: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{ns, nil}
	}()
	r := <-done
	return r.ns, r.err
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
