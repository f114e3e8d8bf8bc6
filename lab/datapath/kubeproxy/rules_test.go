package kubeproxy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	vip    = netip.MustParseAddr("10.96.0.50")
	nfsSvc = Service{Namespace: "default", Name: "nfs", VIP: vip, Ports: []ServicePort{{Port: 2049}}}
	// NFSv3 over TCP and over UDP: the NFS port and mountd's, named as NFS server Services name them.
	v3Svc    = Service{Namespace: "default", Name: "nfs", VIP: vip, Ports: []ServicePort{{Name: "nfs", Port: 2049, Protocol: TCP}, {Name: "mountd", Port: 20048, Protocol: TCP}}}
	v3UDPSvc = Service{Namespace: "default", Name: "nfs", VIP: vip, Ports: []ServicePort{{Name: "nfs-udp", Port: 2049, Protocol: UDP}, {Name: "mountd-udp", Port: 20048, Protocol: UDP}}}
)

var (
	podA = netip.MustParseAddr("10.0.0.11")
	podB = netip.MustParseAddr("10.0.0.12")
)

// TestChainNamesMatchKubeProxy checks the hash against chain names taken from kube-proxy's own
// tests and from real clusters.
func TestChainNamesMatchKubeProxy(t *testing.T) {
	svc1 := Service{Namespace: "ns1", Name: "svc1", VIP: netip.MustParseAddr("172.30.0.41")}
	p80 := ServicePort{Name: "p80", Port: 80}
	ep := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	tests := []struct {
		got, want string
	}{
		{ServiceChain(svc1, p80), "KUBE-SVC-XPGD46QRK7WJZT7O"},
		{EndpointChain(svc1, p80, ep("10.180.0.1:80")), "KUBE-SEP-SXIVWICOYRO3J4NJ"},
		{EndpointChain(svc1, p80, ep("10.180.0.2:80")), "KUBE-SEP-LXVODXWDISEETFEF"},
		{EndpointChain(Service{Namespace: "ns2", Name: "svc2"}, p80, ep("10.180.0.2:80")), "KUBE-SEP-RS4RBKLTHTF2IUXJ"},
		{ServiceChain(Service{Namespace: "default", Name: "kubernetes"}, ServicePort{Name: "https", Port: 443}), "KUBE-SVC-NPX46M4PTMTKRN6Y"},
		{ServiceChain(Service{Namespace: "kube-system", Name: "kube-dns"}, ServicePort{Name: "dns-tcp", Port: 53, Protocol: TCP}), "KUBE-SVC-ERIFXISQEP7F7OF4"},
		{ServiceChain(Service{Namespace: "kube-system", Name: "kube-dns"}, ServicePort{Name: "dns", Port: 53, Protocol: UDP}), "KUBE-SVC-TCOU7JCQXEZGVUNU"},
		{ServiceChain(Service{Namespace: "default", Name: "nginx"}, ServicePort{Port: 80}), "KUBE-SVC-2CMXP7HKUVJN7L6M"}, // unnamed port
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
	for _, svc := range []Service{nfsSvc, v3Svc, v3UDPSvc} {
		for _, c := range Chains(svc, podA) {
			if len(c) > 28 {
				t.Errorf("chain name %s longer than iptables' 28 characters", c)
			}
		}
	}
}

func TestRulesGolden(t *testing.T) {
	// Pinned (and checked against an independent SHA-256/base32 computation) so that the golden
	// texts below stay readable; a change here means the hash input changed.
	pinned := []struct{ got, want string }{
		{ServiceChain(nfsSvc, nfsSvc.Ports[0]), "KUBE-SVC-BJPYFQOCKVBGHBMJ"},
		{EndpointChain(nfsSvc, nfsSvc.Ports[0], netip.AddrPortFrom(podA, 2049)), "KUBE-SEP-WNUY4VVRICJ4GIAX"},
		{EndpointChain(nfsSvc, nfsSvc.Ports[0], netip.AddrPortFrom(podB, 2049)), "KUBE-SEP-TDJSG3UF665FMEHJ"},
		{ServiceChain(v3Svc, v3Svc.Ports[0]), "KUBE-SVC-2TTNVHAOSDYP53LP"},                                         // default/nfs:nfs tcp
		{ServiceChain(v3Svc, v3Svc.Ports[1]), "KUBE-SVC-KRRZLFSDIELP6P5X"},                                         // default/nfs:mountd tcp
		{EndpointChain(v3Svc, v3Svc.Ports[0], netip.AddrPortFrom(podA, 2049)), "KUBE-SEP-HEYFWYXBHJD3PEWD"},        // … 10.0.0.11:2049
		{EndpointChain(v3Svc, v3Svc.Ports[1], netip.AddrPortFrom(podA, 20048)), "KUBE-SEP-LTKYWEOC4TWHFTSW"},       // … 10.0.0.11:20048
		{EndpointChain(v3Svc, v3Svc.Ports[0], netip.AddrPortFrom(podB, 2049)), "KUBE-SEP-S45XL5AMPXFAPGXU"},        // … 10.0.0.12:2049
		{EndpointChain(v3Svc, v3Svc.Ports[1], netip.AddrPortFrom(podB, 20048)), "KUBE-SEP-V5Y7PQMGFBUOHRL3"},       // … 10.0.0.12:20048
		{ServiceChain(v3UDPSvc, v3UDPSvc.Ports[0]), "KUBE-SVC-26UVJ2KAVLISTE26"},                                   // default/nfs:nfs-udp udp
		{ServiceChain(v3UDPSvc, v3UDPSvc.Ports[1]), "KUBE-SVC-CNH6WMLCIJVDS5HH"},                                   // default/nfs:mountd-udp udp
		{EndpointChain(v3UDPSvc, v3UDPSvc.Ports[0], netip.AddrPortFrom(podA, 2049)), "KUBE-SEP-OPTVKLTBOJGZF6WL"},  // … 10.0.0.11:2049
		{EndpointChain(v3UDPSvc, v3UDPSvc.Ports[1], netip.AddrPortFrom(podA, 20048)), "KUBE-SEP-5TCUSIIXZ5VNDDGP"}, // … 10.0.0.11:20048
	}
	for _, p := range pinned {
		if p.got != p.want {
			t.Fatalf("chain name changed: got %s, want %s", p.got, p.want)
		}
	}
	named := nfsSvc
	named.Ports = []ServicePort{{Name: "nfs", Port: 2049}}
	retarget := nfsSvc
	retarget.Ports = []ServicePort{{Port: 2049, TargetPort: 12049}}
	tests := []struct {
		name    string
		svc     Service
		backend netip.Addr
		stale   []netip.Addr
		want    string
	}{
		{
			name: "backend A", svc: nfsSvc, backend: podA,
			want: `*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-BJPYFQOCKVBGHBMJ - [0:0]
:KUBE-SEP-WNUY4VVRICJ4GIAX - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs cluster IP" -m tcp --dport 2049 -j KUBE-SVC-BJPYFQOCKVBGHBMJ
-A KUBE-SVC-BJPYFQOCKVBGHBMJ -m comment --comment "default/nfs -> 10.0.0.11:2049" -j KUBE-SEP-WNUY4VVRICJ4GIAX
-A KUBE-SEP-WNUY4VVRICJ4GIAX -p tcp -m comment --comment "default/nfs" -m tcp -j DNAT --to-destination 10.0.0.11:2049
COMMIT
`,
		},
		{
			name: "re-point A -> B deletes A's endpoint chain", svc: nfsSvc, backend: podB, stale: []netip.Addr{podA},
			want: `*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-BJPYFQOCKVBGHBMJ - [0:0]
:KUBE-SEP-TDJSG3UF665FMEHJ - [0:0]
:KUBE-SEP-WNUY4VVRICJ4GIAX - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs cluster IP" -m tcp --dport 2049 -j KUBE-SVC-BJPYFQOCKVBGHBMJ
-A KUBE-SVC-BJPYFQOCKVBGHBMJ -m comment --comment "default/nfs -> 10.0.0.12:2049" -j KUBE-SEP-TDJSG3UF665FMEHJ
-A KUBE-SEP-TDJSG3UF665FMEHJ -p tcp -m comment --comment "default/nfs" -m tcp -j DNAT --to-destination 10.0.0.12:2049
-X KUBE-SEP-WNUY4VVRICJ4GIAX
COMMIT
`,
		},
		{
			name: "no endpoints: REJECT in filter, Service chain and stale endpoint deleted", svc: nfsSvc, stale: []netip.Addr{podA},
			want: `*filter
:KUBE-SERVICES - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs has no endpoints" -m tcp --dport 2049 -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-BJPYFQOCKVBGHBMJ - [0:0]
:KUBE-SEP-WNUY4VVRICJ4GIAX - [0:0]
-X KUBE-SVC-BJPYFQOCKVBGHBMJ
-X KUBE-SEP-WNUY4VVRICJ4GIAX
COMMIT
`,
		},
		{
			name: "stale equal to the backend and duplicates are ignored", svc: nfsSvc, backend: podA, stale: []netip.Addr{podA, podB, podB},
			want: `*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-BJPYFQOCKVBGHBMJ - [0:0]
:KUBE-SEP-WNUY4VVRICJ4GIAX - [0:0]
:KUBE-SEP-TDJSG3UF665FMEHJ - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs cluster IP" -m tcp --dport 2049 -j KUBE-SVC-BJPYFQOCKVBGHBMJ
-A KUBE-SVC-BJPYFQOCKVBGHBMJ -m comment --comment "default/nfs -> 10.0.0.11:2049" -j KUBE-SEP-WNUY4VVRICJ4GIAX
-A KUBE-SEP-WNUY4VVRICJ4GIAX -p tcp -m comment --comment "default/nfs" -m tcp -j DNAT --to-destination 10.0.0.11:2049
-X KUBE-SEP-TDJSG3UF665FMEHJ
COMMIT
`,
		},
		{
			name: "named port", svc: named, backend: podA,
			want: `*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-2TTNVHAOSDYP53LP - [0:0]
:KUBE-SEP-HEYFWYXBHJD3PEWD - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs:nfs cluster IP" -m tcp --dport 2049 -j KUBE-SVC-2TTNVHAOSDYP53LP
-A KUBE-SVC-2TTNVHAOSDYP53LP -m comment --comment "default/nfs:nfs -> 10.0.0.11:2049" -j KUBE-SEP-HEYFWYXBHJD3PEWD
-A KUBE-SEP-HEYFWYXBHJD3PEWD -p tcp -m comment --comment "default/nfs:nfs" -m tcp -j DNAT --to-destination 10.0.0.11:2049
COMMIT
`,
		},
		{
			name: "target port differs from the service port", svc: retarget, backend: podA,
			want: strings.NewReplacer("KUBE-SEP-WNUY4VVRICJ4GIAX", EndpointChain(retarget, retarget.Ports[0], netip.MustParseAddrPort("10.0.0.11:12049")),
				"10.0.0.11:2049", "10.0.0.11:12049").Replace(`*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-BJPYFQOCKVBGHBMJ - [0:0]
:KUBE-SEP-WNUY4VVRICJ4GIAX - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs cluster IP" -m tcp --dport 2049 -j KUBE-SVC-BJPYFQOCKVBGHBMJ
-A KUBE-SVC-BJPYFQOCKVBGHBMJ -m comment --comment "default/nfs -> 10.0.0.11:2049" -j KUBE-SEP-WNUY4VVRICJ4GIAX
-A KUBE-SEP-WNUY4VVRICJ4GIAX -p tcp -m comment --comment "default/nfs" -m tcp -j DNAT --to-destination 10.0.0.11:2049
COMMIT
`),
		},
		{
			name: "NFSv3 over TCP: two ports, a chain pair each", svc: v3Svc, backend: podA,
			want: `*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-2TTNVHAOSDYP53LP - [0:0]
:KUBE-SEP-HEYFWYXBHJD3PEWD - [0:0]
:KUBE-SVC-KRRZLFSDIELP6P5X - [0:0]
:KUBE-SEP-LTKYWEOC4TWHFTSW - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs:nfs cluster IP" -m tcp --dport 2049 -j KUBE-SVC-2TTNVHAOSDYP53LP
-A KUBE-SVC-2TTNVHAOSDYP53LP -m comment --comment "default/nfs:nfs -> 10.0.0.11:2049" -j KUBE-SEP-HEYFWYXBHJD3PEWD
-A KUBE-SEP-HEYFWYXBHJD3PEWD -p tcp -m comment --comment "default/nfs:nfs" -m tcp -j DNAT --to-destination 10.0.0.11:2049
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs:mountd cluster IP" -m tcp --dport 20048 -j KUBE-SVC-KRRZLFSDIELP6P5X
-A KUBE-SVC-KRRZLFSDIELP6P5X -m comment --comment "default/nfs:mountd -> 10.0.0.11:20048" -j KUBE-SEP-LTKYWEOC4TWHFTSW
-A KUBE-SEP-LTKYWEOC4TWHFTSW -p tcp -m comment --comment "default/nfs:mountd" -m tcp -j DNAT --to-destination 10.0.0.11:20048
COMMIT
`,
		},
		{
			name: "NFSv3 over TCP re-pointed A -> B", svc: v3Svc, backend: podB, stale: []netip.Addr{podA},
			want: `*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-2TTNVHAOSDYP53LP - [0:0]
:KUBE-SEP-S45XL5AMPXFAPGXU - [0:0]
:KUBE-SVC-KRRZLFSDIELP6P5X - [0:0]
:KUBE-SEP-V5Y7PQMGFBUOHRL3 - [0:0]
:KUBE-SEP-HEYFWYXBHJD3PEWD - [0:0]
:KUBE-SEP-LTKYWEOC4TWHFTSW - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs:nfs cluster IP" -m tcp --dport 2049 -j KUBE-SVC-2TTNVHAOSDYP53LP
-A KUBE-SVC-2TTNVHAOSDYP53LP -m comment --comment "default/nfs:nfs -> 10.0.0.12:2049" -j KUBE-SEP-S45XL5AMPXFAPGXU
-A KUBE-SEP-S45XL5AMPXFAPGXU -p tcp -m comment --comment "default/nfs:nfs" -m tcp -j DNAT --to-destination 10.0.0.12:2049
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs:mountd cluster IP" -m tcp --dport 20048 -j KUBE-SVC-KRRZLFSDIELP6P5X
-A KUBE-SVC-KRRZLFSDIELP6P5X -m comment --comment "default/nfs:mountd -> 10.0.0.12:20048" -j KUBE-SEP-V5Y7PQMGFBUOHRL3
-A KUBE-SEP-V5Y7PQMGFBUOHRL3 -p tcp -m comment --comment "default/nfs:mountd" -m tcp -j DNAT --to-destination 10.0.0.12:20048
-X KUBE-SEP-HEYFWYXBHJD3PEWD
-X KUBE-SEP-LTKYWEOC4TWHFTSW
COMMIT
`,
		},
		{
			name: "NFSv3 over UDP", svc: v3UDPSvc, backend: podA,
			want: `*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-26UVJ2KAVLISTE26 - [0:0]
:KUBE-SEP-OPTVKLTBOJGZF6WL - [0:0]
:KUBE-SVC-CNH6WMLCIJVDS5HH - [0:0]
:KUBE-SEP-5TCUSIIXZ5VNDDGP - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p udp -m comment --comment "default/nfs:nfs-udp cluster IP" -m udp --dport 2049 -j KUBE-SVC-26UVJ2KAVLISTE26
-A KUBE-SVC-26UVJ2KAVLISTE26 -m comment --comment "default/nfs:nfs-udp -> 10.0.0.11:2049" -j KUBE-SEP-OPTVKLTBOJGZF6WL
-A KUBE-SEP-OPTVKLTBOJGZF6WL -p udp -m comment --comment "default/nfs:nfs-udp" -m udp -j DNAT --to-destination 10.0.0.11:2049
-A KUBE-SERVICES -d 10.96.0.50/32 -p udp -m comment --comment "default/nfs:mountd-udp cluster IP" -m udp --dport 20048 -j KUBE-SVC-CNH6WMLCIJVDS5HH
-A KUBE-SVC-CNH6WMLCIJVDS5HH -m comment --comment "default/nfs:mountd-udp -> 10.0.0.11:20048" -j KUBE-SEP-5TCUSIIXZ5VNDDGP
-A KUBE-SEP-5TCUSIIXZ5VNDDGP -p udp -m comment --comment "default/nfs:mountd-udp" -m udp -j DNAT --to-destination 10.0.0.11:20048
COMMIT
`,
		},
		{
			name: "NFSv3 over UDP without endpoints: a REJECT per port", svc: v3UDPSvc, stale: []netip.Addr{podA},
			want: `*filter
:KUBE-SERVICES - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p udp -m comment --comment "default/nfs:nfs-udp has no endpoints" -m udp --dport 2049 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-SERVICES -d 10.96.0.50/32 -p udp -m comment --comment "default/nfs:mountd-udp has no endpoints" -m udp --dport 20048 -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-26UVJ2KAVLISTE26 - [0:0]
:KUBE-SVC-CNH6WMLCIJVDS5HH - [0:0]
:KUBE-SEP-OPTVKLTBOJGZF6WL - [0:0]
:KUBE-SEP-5TCUSIIXZ5VNDDGP - [0:0]
-X KUBE-SVC-26UVJ2KAVLISTE26
-X KUBE-SVC-CNH6WMLCIJVDS5HH
-X KUBE-SEP-OPTVKLTBOJGZF6WL
-X KUBE-SEP-5TCUSIIXZ5VNDDGP
COMMIT
`,
		},
		{
			name: "mixed protocols on one port number", svc: Service{Namespace: "default", Name: "nfs", VIP: vip,
				Ports: []ServicePort{{Name: "nfs", Port: 2049, Protocol: TCP}, {Name: "nfs-udp", Port: 2049, Protocol: UDP}}},
			backend: podA,
			want: `*filter
:KUBE-SERVICES - [0:0]
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-2TTNVHAOSDYP53LP - [0:0]
:KUBE-SEP-HEYFWYXBHJD3PEWD - [0:0]
:KUBE-SVC-26UVJ2KAVLISTE26 - [0:0]
:KUBE-SEP-OPTVKLTBOJGZF6WL - [0:0]
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/nfs:nfs cluster IP" -m tcp --dport 2049 -j KUBE-SVC-2TTNVHAOSDYP53LP
-A KUBE-SVC-2TTNVHAOSDYP53LP -m comment --comment "default/nfs:nfs -> 10.0.0.11:2049" -j KUBE-SEP-HEYFWYXBHJD3PEWD
-A KUBE-SEP-HEYFWYXBHJD3PEWD -p tcp -m comment --comment "default/nfs:nfs" -m tcp -j DNAT --to-destination 10.0.0.11:2049
-A KUBE-SERVICES -d 10.96.0.50/32 -p udp -m comment --comment "default/nfs:nfs-udp cluster IP" -m udp --dport 2049 -j KUBE-SVC-26UVJ2KAVLISTE26
-A KUBE-SVC-26UVJ2KAVLISTE26 -m comment --comment "default/nfs:nfs-udp -> 10.0.0.11:2049" -j KUBE-SEP-OPTVKLTBOJGZF6WL
-A KUBE-SEP-OPTVKLTBOJGZF6WL -p udp -m comment --comment "default/nfs:nfs-udp" -m udp -j DNAT --to-destination 10.0.0.11:2049
COMMIT
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Rules(tt.svc, tt.backend, tt.stale...); got != tt.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestRenderDeletesOnlyWhatItDoesNotCreate: a stale chain name that Rules creates anyway is
// never deleted.
func TestRenderDeletesOnlyWhatItDoesNotCreate(t *testing.T) {
	keep := Chains(v3Svc, podA)
	text := render(v3Svc, podA, append([]string{"KUBE-SEP-GONE"}, keep...))
	if strings.Count(text, "-X ") != 1 || !strings.Contains(text, "-X KUBE-SEP-GONE\n") {
		t.Fatalf("got:\n%s", text)
	}
}

func TestTeardownAndSkeleton(t *testing.T) {
	chains := []string{"KUBE-SEP-WNUY4VVRICJ4GIAX", "KUBE-SVC-BJPYFQOCKVBGHBMJ"}
	for _, tc := range []struct {
		name, got, want string
	}{
		{"teardown", teardown(chains, false), `*filter
:KUBE-SERVICES - [0:0]
-X KUBE-SERVICES
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SEP-WNUY4VVRICJ4GIAX - [0:0]
:KUBE-SVC-BJPYFQOCKVBGHBMJ - [0:0]
-X KUBE-SERVICES
-X KUBE-SEP-WNUY4VVRICJ4GIAX
-X KUBE-SVC-BJPYFQOCKVBGHBMJ
COMMIT
`},
		{"teardown with jumps", teardown(chains, true), `*filter
:KUBE-SERVICES - [0:0]
-D OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-D FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-X KUBE-SERVICES
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SEP-WNUY4VVRICJ4GIAX - [0:0]
:KUBE-SVC-BJPYFQOCKVBGHBMJ - [0:0]
-D OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-X KUBE-SERVICES
-X KUBE-SEP-WNUY4VVRICJ4GIAX
-X KUBE-SVC-BJPYFQOCKVBGHBMJ
COMMIT
`},
		{"skeleton", skeleton(), `*filter
:KUBE-SERVICES - [0:0]
-I OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
*nat
:KUBE-SERVICES - [0:0]
-I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
`},
	} {
		if tc.got != tc.want {
			t.Errorf("%s, got:\n%s\nwant:\n%s", tc.name, tc.got, tc.want)
		}
	}
}

func TestJumps(t *testing.T) {
	var got []string
	for _, j := range jumps() {
		got = append(got, "-t "+j.table+" -A "+j.chain+" "+strings.Join(j.args, " "))
	}
	want := []string{
		"-t nat -A OUTPUT -m comment --comment kubernetes service portals -j KUBE-SERVICES",
		"-t nat -A PREROUTING -m comment --comment kubernetes service portals -j KUBE-SERVICES",
		"-t filter -A OUTPUT -m conntrack --ctstate NEW -m comment --comment kubernetes service portals -j KUBE-SERVICES",
		"-t filter -A FORWARD -m conntrack --ctstate NEW -m comment --comment kubernetes service portals -j KUBE-SERVICES",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestServiceValidate(t *testing.T) {
	tests := []struct {
		name    string
		svc     Service
		mod     func(*Service)
		wantErr string
	}{
		{"valid", nfsSvc, func(*Service) {}, ""},
		{"valid named port", nfsSvc, func(s *Service) { s.Ports = []ServicePort{{Name: "nfs-tcp", Port: 2049}} }, ""},
		{"valid v3", v3Svc, func(*Service) {}, ""},
		{"valid v3 udp", v3UDPSvc, func(*Service) {}, ""},
		{"same number, two protocols", v3Svc, func(s *Service) { s.Ports[1] = ServicePort{Name: "nfs-udp", Port: 2049, Protocol: UDP} }, ""},
		{"empty namespace", nfsSvc, func(s *Service) { s.Namespace = "" }, "namespace"},
		{"upper case name", nfsSvc, func(s *Service) { s.Name = "NFS" }, "name"},
		{"quote in name", nfsSvc, func(s *Service) { s.Name = `n"fs` }, "name"},
		{"space in port name", nfsSvc, func(s *Service) { s.Ports = []ServicePort{{Name: "a b", Port: 1}} }, "port name"},
		{"leading hyphen", nfsSvc, func(s *Service) { s.Namespace = "-x" }, "namespace"},
		{"too long", nfsSvc, func(s *Service) { s.Name = strings.Repeat("a", 64) }, "name"},
		{"ipv6 vip", nfsSvc, func(s *Service) { s.VIP = netip.MustParseAddr("fd00::50") }, "IPv4"},
		{"no vip", nfsSvc, func(s *Service) { s.VIP = netip.Addr{} }, "IPv4"},
		{"no ports", nfsSvc, func(s *Service) { s.Ports = nil }, "no ports"},
		{"no port number", nfsSvc, func(s *Service) { s.Ports[0].Port = 0 }, "no port number"},
		{"sctp", nfsSvc, func(s *Service) { s.Ports[0].Protocol = "sctp" }, "protocol"},
		{"upper-case protocol", nfsSvc, func(s *Service) { s.Ports[0].Protocol = "TCP" }, "protocol"},
		{"unnamed among several", v3Svc, func(s *Service) { s.Ports[1].Name = "" }, "has no name"},
		{"duplicate name", v3Svc, func(s *Service) { s.Ports[1].Name = "nfs" }, "used twice"},
		{"duplicate port and protocol", v3Svc, func(s *Service) { s.Ports[1].Port = 2049 }, "2049/tcp used twice"},
		{"tcp default collides with tcp", v3Svc, func(s *Service) { s.Ports[0].Protocol, s.Ports[1].Port = "", 2049 }, "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.svc
			s.Ports = slices.Clone(s.Ports)
			tt.mod(&s)
			err := s.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	for _, b := range []struct {
		addr string
		ok   bool
	}{{"", true}, {"10.0.0.11", true}, {"::ffff:10.0.0.11", false}, {"fd00::1", false}} {
		var a netip.Addr
		if b.addr != "" {
			a = netip.MustParseAddr(b.addr)
		}
		if err := checkBackend(a); (err == nil) != b.ok {
			t.Errorf("checkBackend(%q) = %v", b.addr, err)
		}
	}
}

// TestForwardedTo reads the endpoint back from rules as iptables lists them: Rules' own text,
// whose -A lines are in iptables -S's form.
func TestForwardedTo(t *testing.T) {
	mountd := v3Svc.Ports[1]
	tests := []struct {
		name  string
		rules string
		svc   Service
		port  ServicePort
		want  netip.AddrPort
		ok    bool
	}{
		{"A", Rules(nfsSvc, podA), nfsSvc, nfsSvc.Ports[0], netip.AddrPortFrom(podA, 2049), true},
		{"B, A's chain deleted", Rules(nfsSvc, podB, podA), nfsSvc, nfsSvc.Ports[0], netip.AddrPortFrom(podB, 2049), true},
		{"no endpoint", Rules(nfsSvc, netip.Addr{}), nfsSvc, nfsSvc.Ports[0], netip.AddrPort{}, false},
		{"the second port of a two-port service", Rules(v3Svc, podB), v3Svc, mountd, netip.AddrPortFrom(podB, 20048), true},
		{"another service's rules", Rules(v3UDPSvc, podA), nfsSvc, nfsSvc.Ports[0], netip.AddrPort{}, false},
		{"empty", "", nfsSvc, nfsSvc.Ports[0], netip.AddrPort{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := forwardedTo(tt.rules, tt.svc, tt.port)
			if got != tt.want || ok != tt.ok {
				t.Errorf("forwardedTo = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzForwardedTo(f *testing.F) {
	f.Add(Rules(nfsSvc, podA))
	f.Add("-A KUBE-SVC-X -j KUBE-SEP-Y\n-A KUBE-SEP-Y -j DNAT --to-destination")
	f.Fuzz(func(t *testing.T, rules string) {
		if ep, ok := forwardedTo(rules, nfsSvc, nfsSvc.Ports[0]); ok != ep.IsValid() {
			t.Errorf("forwardedTo = %v, %v: ok and a valid endpoint disagree", ep, ok)
		}
	})
}
