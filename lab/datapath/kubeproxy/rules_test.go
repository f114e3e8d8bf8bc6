package kubeproxy

import (
	"net/netip"
	"strings"
	"testing"
)

var nfsSvc = Service{Namespace: "default", Name: "nfs", VIP: netip.MustParseAddrPort("10.96.0.50:2049")}

var (
	podA = netip.MustParseAddrPort("10.0.0.11:2049")
	podB = netip.MustParseAddrPort("10.0.0.12:2049")
)

// TestChainNamesMatchKubeProxy checks the hash against chain names taken from kube-proxy's own
// tests and from real clusters.
func TestChainNamesMatchKubeProxy(t *testing.T) {
	svc1 := Service{Namespace: "ns1", Name: "svc1", PortName: "p80", VIP: netip.MustParseAddrPort("172.30.0.41:80")}
	tests := []struct {
		got, want string
	}{
		{ServiceChain(svc1), "KUBE-SVC-XPGD46QRK7WJZT7O"},
		{EndpointChain(svc1, netip.MustParseAddrPort("10.180.0.1:80")), "KUBE-SEP-SXIVWICOYRO3J4NJ"},
		{EndpointChain(svc1, netip.MustParseAddrPort("10.180.0.2:80")), "KUBE-SEP-LXVODXWDISEETFEF"},
		{EndpointChain(Service{Namespace: "ns2", Name: "svc2", PortName: "p80"}, netip.MustParseAddrPort("10.180.0.2:80")), "KUBE-SEP-RS4RBKLTHTF2IUXJ"},
		{ServiceChain(Service{Namespace: "default", Name: "kubernetes", PortName: "https"}), "KUBE-SVC-NPX46M4PTMTKRN6Y"},
		{ServiceChain(Service{Namespace: "kube-system", Name: "kube-dns", PortName: "dns-tcp"}), "KUBE-SVC-ERIFXISQEP7F7OF4"},
		{ServiceChain(Service{Namespace: "default", Name: "nginx"}), "KUBE-SVC-2CMXP7HKUVJN7L6M"}, // unnamed port
		{"KUBE-SVC-" + hash16("kube-system/kube-dns:dns"+"udp"), "KUBE-SVC-TCOU7JCQXEZGVUNU"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
	if len(ServiceChain(nfsSvc)) > 28 || len(EndpointChain(nfsSvc, podA)) > 28 {
		t.Error("chain name longer than iptables' 28 characters")
	}
}

func TestRulesGolden(t *testing.T) {
	svcChain := ServiceChain(nfsSvc)
	sepA := EndpointChain(nfsSvc, podA)
	sepB := EndpointChain(nfsSvc, podB)
	if svcChain != "KUBE-SVC-BJPYFQOCKVBGHBMJ" || sepA != "KUBE-SEP-WNUY4VVRICJ4GIAX" || sepB != "KUBE-SEP-TDJSG3UF665FMEHJ" {
		// Pinned so that the golden texts below stay readable; a change here means the hash changed.
		t.Fatalf("chain names changed: %s %s %s", svcChain, sepA, sepB)
	}
	named := nfsSvc
	named.PortName = "nfs"
	tests := []struct {
		name    string
		svc     Service
		backend netip.AddrPort
		stale   []netip.AddrPort
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
			name: "re-point A -> B deletes A's endpoint chain", svc: nfsSvc, backend: podB, stale: []netip.AddrPort{podA},
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
			name: "no endpoints: REJECT in filter, Service chain and stale endpoint deleted", svc: nfsSvc, stale: []netip.AddrPort{podA},
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
			name: "stale equal to the backend and duplicates are ignored", svc: nfsSvc, backend: podA, stale: []netip.AddrPort{podA, podB, podB},
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
			want: strings.NewReplacer(
				"KUBE-SVC-BJPYFQOCKVBGHBMJ", ServiceChain(named),
				"KUBE-SEP-WNUY4VVRICJ4GIAX", EndpointChain(named, podA),
				"default/nfs", "default/nfs:nfs",
			).Replace(`*filter
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Rules(tt.svc, tt.backend, tt.stale...); got != tt.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
	if ServiceChain(named) == svcChain || EndpointChain(named, podA) == sepA {
		t.Error("a named port must hash differently")
	}
}

func TestTeardownAndSkeleton(t *testing.T) {
	want := `*filter
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
`
	if got := teardown([]string{"KUBE-SEP-WNUY4VVRICJ4GIAX", "KUBE-SVC-BJPYFQOCKVBGHBMJ"}); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := skeleton(); got != "*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n" {
		t.Fatalf("skeleton:\n%s", got)
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
	ok := nfsSvc
	tests := []struct {
		name    string
		mod     func(*Service)
		wantErr string
	}{
		{"valid", func(*Service) {}, ""},
		{"valid named port", func(s *Service) { s.PortName = "nfs-tcp" }, ""},
		{"empty namespace", func(s *Service) { s.Namespace = "" }, "namespace"},
		{"upper case name", func(s *Service) { s.Name = "NFS" }, "name"},
		{"quote in name", func(s *Service) { s.Name = `n"fs` }, "name"},
		{"space in port name", func(s *Service) { s.PortName = "a b" }, "port name"},
		{"leading hyphen", func(s *Service) { s.Namespace = "-x" }, "namespace"},
		{"too long", func(s *Service) { s.Name = strings.Repeat("a", 64) }, "name"},
		{"ipv6 vip", func(s *Service) { s.VIP = netip.MustParseAddrPort("[fd00::50]:2049") }, "IPv4"},
		{"no vip", func(s *Service) { s.VIP = netip.AddrPort{} }, "IPv4"},
		{"no port", func(s *Service) { s.VIP = netip.MustParseAddrPort("10.96.0.50:0") }, "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
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
		ap string
		ok bool
	}{{"", true}, {"10.0.0.11:2049", true}, {"10.0.0.11:0", false}, {"[fd00::1]:2049", false}} {
		var ap netip.AddrPort
		if b.ap != "" {
			ap = netip.MustParseAddrPort(b.ap)
		}
		if err := checkBackend(ap); (err == nil) != b.ok {
			t.Errorf("checkBackend(%q) = %v", b.ap, err)
		}
	}
}
