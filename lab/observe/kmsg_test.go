package observe

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

func TestParseKmsgRecord(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    KmsgRecord
		wantErr string
	}{
		{
			name: "nfs not responding",
			in:   "4,1203,134217728,-;nfs: server 10.96.0.50 not responding, timed out\n",
			want: KmsgRecord{Facility: 0, Level: 4, Seq: 1203, TimeUsec: 134217728, Flags: "-", Message: "nfs: server 10.96.0.50 not responding, timed out"},
		},
		{
			name: "caller field and dictionary",
			in:   "30,7,42,c,caller=T1;systemd[1]: started\n SUBSYSTEM=net\n DEVICE=n2\n",
			want: KmsgRecord{Facility: 3, Level: 6, Seq: 7, TimeUsec: 42, Flags: "c", Message: "systemd[1]: started"},
		},
		{
			name: "semicolons in the message",
			in:   "6,1,2,-;a;b;c",
			want: KmsgRecord{Level: 6, Seq: 1, TimeUsec: 2, Flags: "-", Message: "a;b;c"},
		},
		{name: "empty message", in: "6,1,2,-;", want: KmsgRecord{Level: 6, Seq: 1, TimeUsec: 2, Flags: "-"}},
		{name: "no semicolon", in: "6,1,2,- hello", wantErr: "no ';'"},
		{name: "three fields", in: "6,1,2;hello", wantErr: "at least 4"},
		{name: "bad prio", in: "x,1,2,-;hello", wantErr: "priority"},
		{name: "huge prio", in: "4294967295,1,2,-;hello", wantErr: "priority"},
		{name: "bad seq", in: "6,-1,2,-;hello", wantErr: "sequence"},
		{name: "bad ts", in: "6,1,2.5,-;hello", wantErr: "timestamp"},
		{name: "continuation line alone", in: " SUBSYSTEM=net", wantErr: "no ';'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKmsgRecord(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNFSRelevant(t *testing.T) {
	tests := []struct {
		msg  string
		want bool
	}{
		{"nfs: server 10.96.0.50 not responding, timed out", true},
		{"nfs: server 10.96.0.50 OK", true},
		{"NFS: nfs4_discover_server_trunking unhandled error -512. Exiting with error EIO", true},
		{"RPC: xs_tcp_setup_socket: connect returned unhandled error -113", true},
		{"lockd: server 10.0.0.11 not responding", true},
		{"NFSD: starting 90-second grace period", true},
		{"sunrpc: timed out", true},
		{"NFSv4: state recovery failed", true},
		{"br0: port 1(vethA) entered disabled state", false},
		{"Nfs: wrong case", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := NFSRelevant(tt.msg); got != tt.want {
			t.Errorf("NFSRelevant(%q) = %v, want %v", tt.msg, got, tt.want)
		}
	}
}

// recordReader returns one record per Read, like /dev/kmsg, and can inject errors.
type recordReader struct {
	reads []any // string (a record) or error
}

func (r *recordReader) Read(p []byte) (int, error) {
	if len(r.reads) == 0 {
		return 0, io.EOF
	}
	next := r.reads[0]
	r.reads = r.reads[1:]
	if err, ok := next.(error); ok {
		return 0, err
	}
	return copy(p, next.(string)), nil
}

const kmsgStream = "6,100,1000,-;br0: port 1(vethA) entered forwarding state\n" +
	"3,101,2000,-;nfs: server 10.96.0.50 not responding, timed out\n" +
	" SUBSYSTEM=nfs\n" +
	"garbage without prefix\n" +
	"5,102,3000,-;nfs: server 10.96.0.50 OK\n" +
	"6,103,4000,-;RPC: unrelated-but-relevant" // no final newline

func TestReadKmsg(t *testing.T) {
	nfsLines := []string{
		"nfs: server 10.96.0.50 not responding, timed out",
		"nfs: server 10.96.0.50 OK",
		"RPC: unrelated-but-relevant",
	}
	tests := []struct {
		name    string
		r       func() io.Reader
		match   func(string) bool
		want    []string
		wantErr error
	}{
		{
			name:  "whole stream, NFS lines",
			r:     func() io.Reader { return strings.NewReader(kmsgStream) },
			match: NFSRelevant,
			want:  nfsLines,
		},
		{
			name:  "one byte at a time",
			r:     func() io.Reader { return iotest.OneByteReader(strings.NewReader(kmsgStream)) },
			match: NFSRelevant,
			want:  nfsLines,
		},
		{
			name: "one record per read with EPIPE in between",
			r: func() io.Reader {
				return &recordReader{reads: []any{
					"6,1,1,-;NFS: first\n",
					syscall.EPIPE, // records 2..9 were overwritten
					"6,10,1,-;NFS: tenth\n SUBSYSTEM=x\n",
				}}
			},
			match: NFSRelevant,
			want:  []string{"NFS: first", "NFS: tenth"},
		},
		{
			name:  "nil match takes everything that parses",
			r:     func() io.Reader { return strings.NewReader(kmsgStream) },
			match: nil,
			want: []string{
				"br0: port 1(vethA) entered forwarding state",
				"nfs: server 10.96.0.50 not responding, timed out",
				"nfs: server 10.96.0.50 OK",
				"RPC: unrelated-but-relevant",
			},
		},
		{
			name:    "read error is returned",
			r:       func() io.Reader { return &recordReader{reads: []any{"6,1,1,-;NFS: a\n", syscall.EIO}} },
			match:   NFSRelevant,
			want:    []string{"NFS: a"},
			wantErr: syscall.EIO,
		},
		{name: "empty", r: func() io.Reader { return strings.NewReader("") }, match: NFSRelevant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := ReadKmsg(t.Context(), tt.r(), tt.match, func(m string) { got = append(got, m) })
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestReadKmsgStopsWhenReaderClosedOnCancel(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(t.Context())
	stop := context.AfterFunc(ctx, func() { pr.Close() })
	defer stop()
	got := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- ReadKmsg(ctx, pr, nil, func(m string) { got <- m }) }()
	if _, err := pw.Write([]byte("6,1,1,-;NFS: hello\n")); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != "NFS: hello" {
		t.Fatalf("got %q", m)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadKmsg did not return after cancel")
	}
}

func TestFollowKmsgRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(path, []byte(kmsgStream+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := FollowKmsg(t.Context(), path, false, NFSRelevant, func(m string) { got = append(got, m) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %q", got)
	}
	got = nil
	if err := FollowKmsg(t.Context(), path, true, nil, func(m string) { got = append(got, m) }); err != nil || len(got) != 0 {
		t.Fatalf("fromEnd on a file: %v, %q", err, got)
	}
	if err := FollowKmsg(t.Context(), filepath.Join(t.TempDir(), "missing"), false, nil, func(string) {}); err == nil {
		t.Fatal("no error for a missing file")
	}
}

// TestFollowKmsgDevice follows the real /dev/kmsg from its end (so it blocks: nothing new is
// logged) and checks that canceling ctx ends the blocked read promptly.
func TestFollowKmsgDevice(t *testing.T) {
	f, err := os.Open(KmsgPath)
	if err != nil {
		t.Skipf("cannot read %s: %v", KmsgPath, err)
	}
	f.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- FollowKmsg(ctx, KmsgPath, true, NFSRelevant, func(string) {}) }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("FollowKmsg returned before cancel: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FollowKmsg did not return after cancel")
	}

	// From the start, the ring buffer's records must parse (the first read returns at once).
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	n := 0
	err = FollowKmsg(ctx, KmsgPath, false, nil, func(string) { n++ })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	t.Logf("%d records in the ring buffer", n)
}

func FuzzParseKmsg(f *testing.F) {
	f.Add("4,1203,134217728,-;nfs: server 10.96.0.50 not responding, timed out\n")
	f.Add("30,7,42,c,caller=T1;x\n SUBSYSTEM=net\n")
	f.Add(";;;")
	f.Add("1,2,3,4")
	f.Fuzz(func(t *testing.T, in string) {
		rec, err := ParseKmsgRecord(in)
		if err != nil {
			return
		}
		if rec.Level > 7 || strings.Contains(rec.Message, "\n") {
			t.Fatalf("bad record %+v", rec)
		}
		if !strings.Contains(in, rec.Message) {
			t.Fatalf("message %q not in input", rec.Message)
		}
		// The stream reader must deliver the same message for the same single record.
		var got []string
		if err := ReadKmsg(t.Context(), strings.NewReader(in), nil, func(m string) { got = append(got, m) }); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(in, " ") && !strings.HasPrefix(in, "\n") && (len(got) == 0 || got[0] != rec.Message) {
			t.Fatalf("ReadKmsg got %q, ParseKmsgRecord %q", got, rec.Message)
		}
	})
}
