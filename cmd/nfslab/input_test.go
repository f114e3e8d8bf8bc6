package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain keeps the package's tests away from the host's run registry and temp directory:
// commands that get as far as registering a run do it in a private directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nfslab-cmd-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("NFSLAB_RUN_DIR", filepath.Join(dir, "runs"))
	os.Setenv("TMPDIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestBadInputCreatesNothing: input that cannot work is reported with the file and field, exit
// 2, before anything is created: no report directory, no run record, no work directory.
func TestBadInputCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missingKernel := write("missing-kernel.yaml", "name: t\nmatrix: {kernels: [debian-stock, "+dir+"/nope/bzImage], datapaths: [socket-lb]}\n")
	unknownRecipe := write("unknown-recipe.yaml", "name: t\nmatrix: {kernels: [debian-stock, vulnerable-9.9], datapaths: [socket-lb]}\n")
	invalid := write("invalid.yaml", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [ipvs]}\n")
	notKernel := write("bzImage", strings.Repeat("\x00", 4096))
	untagged := write("untagged.tar", manifestOnlyTar(t, `[{"Config":"c.json","RepoTags":[]}]`))
	missingNode := filepath.Join(dir, "nope", "node.tar")
	ownedValues := write("owned.yaml", "bpf: {masquerade: false}\nkubeProxyReplacement: false\n")
	notYAML := write("broken.yaml", "socketLB: [enabled\n")
	goodValues := write("values.yaml", "bpf: {masquerade: false}\n")
	cilium115 := write("cilium-115.tar", imagesTar(t, "quay.io/cilium/cilium:v1.15.19", "quay.io/cilium/operator-generic:v1.15.19"))
	agentOnly := write("agent.tar", imagesTar(t, "quay.io/cilium/cilium:v1.15.19"))
	cell119 := "debian-stock/kind/cilium@v1.19.7/4.1/delete-pod"
	cell115 := "debian-stock/kind/cilium@v1.15.19/4.1/delete-pod"
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"missing kernel image named in a scenario file", []string{"--scenario", missingKernel}, missingKernel + ": matrix.kernels[1]: kernel image " + dir + "/nope/bzImage"},
		{"unknown recipe named in a scenario file", []string{"--scenario", unknownRecipe}, unknownRecipe + `: matrix.kernels[1]: unknown kernel "vulnerable-9.9"`},
		{"invalid scenario file", []string{"--scenario", invalid}, invalid + `: matrix.datapaths[0]: unknown datapath "ipvs"`},
		{"not a kernel image on the command line", []string{"--kernel", notKernel}, "--kernel[0]: kernel image " + notKernel},
		{"scenario file as an argument", []string{invalid}, "name a scenario with --scenario, e.g. nfslab run --scenario " + invalid},
		{"a node image file that does not exist", []string{"--cluster", "kind", "--node-image", missingNode}, `--node-image "` + missingNode + `": no such file`},
		{"a node image that is not a docker-archive", []string{"--cluster", "kind", "--node-image", notKernel}, `--node-image "` + notKernel + `": ` + notKernel + ": no manifest.json: not a docker-archive"},
		{"a node image archive without a tag", []string{"--cluster", "kind", "--node-image", untagged}, `--node-image "` + untagged + `": ` + untagged + ": the image has no tag"},
		{"a Cilium values file that sets a value nfslab owns", []string{"--cilium-values", ownedValues}, ownedValues + ": kubeProxyReplacement: set by nfslab for datapath cilium; remove it"},
		{"a Cilium values file that is not YAML", []string{"--cilium-values", notYAML}, notYAML + ": not YAML: "},
		{"a Cilium values file that does not exist", []string{"--cilium-values", missingNode}, "--cilium-values: open " + missingNode + ": no such file"},
		{"a Cilium values file for a run without Cilium", []string{"--cilium-values", goodValues}, "--cilium-values " + goodValues + ": the run has no Cilium datapath"},
		{"Cilium's images for a run without Cilium", []string{"--cilium-image", cilium115}, `--cilium-image "` + cilium115 + `": Cilium's images, and the run has no Cilium cell`},
		{"Cilium's images for two Cilium versions", []string{"--scenario", "cilium", "--kernel", "debian-stock", "--datapath", "cilium", "--cilium-image", cilium115}, "the run's Cilium cells are of 2 versions (v1.19.7, v1.15.19)"},
		{"Cilium's images of another version", []string{"--scenario", "cilium", "--cell", cell119, "--cilium-image", cilium115}, "its agent is v1.15.19 and the Cilium to install is v1.19.7"},
		{"Cilium's images without the operator", []string{"--scenario", "cilium", "--cell", cell115, "--cilium-image", agentOnly}, agentOnly + ": 0 images of Cilium's operator"},
		{"Cilium's agent as a reference that is not one", []string{"--scenario", "cilium", "--cell", cell115, "--cilium-image", "quay.io/cilium/operator-generic:v1.15.19"}, "not Cilium's agent image"},
		{"a node image for a run without kind cells", []string{"--cluster", "netns", "--node-image", "kindest/node:v1"}, `--node-image "kindest/node:v1" is a kind node image: the run has no kind cell`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reportDir := filepath.Join(t.TempDir(), "report")
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"run", "--report-dir", reportDir}, tt.args...), &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantErr)
			}
			if _, err := os.Stat(reportDir); err == nil {
				t.Errorf("bad input left a report directory %s", reportDir)
			}
			if runs, _ := filepath.Glob(filepath.Join(os.Getenv("NFSLAB_RUN_DIR"), "*.json")); len(runs) > 0 {
				t.Errorf("bad input left run records %v", runs)
			}
			if work, _ := filepath.Glob(filepath.Join(os.TempDir(), "nfslab-run-*")); len(work) > 0 {
				t.Errorf("bad input left work directories %v", work)
			}
		})
	}
}

// imagesTar is a docker-archive of one config shared by images tagged tags, a tag each.
func imagesTar(t *testing.T, tags ...string) string {
	t.Helper()
	manifest := "["
	for i, tag := range tags {
		if i > 0 {
			manifest += ","
		}
		manifest += `{"Config":"c.json","RepoTags":["` + tag + `"],"Layers":[]}`
	}
	manifest += "]"
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range [][2]string{{"c.json", "{}"}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: e[0], Mode: 0o644, Size: int64(len(e[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// manifestOnlyTar is a tar holding only a manifest.json with the given text.
func manifestOnlyTar(t *testing.T, manifest string) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(manifest)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
