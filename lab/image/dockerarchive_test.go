package image

import (
	"strings"
	"testing"
)

// TestParseDockerManifest: one tagged image is read with its tags in Docker's short form and
// its config's path cleaned; anything else is refused.
func TestParseDockerManifest(t *testing.T) {
	for _, tt := range []struct {
		name, data  string
		tags        []string
		config, err string
	}{
		{name: "kind node", data: `[{"Config":"abc.json","RepoTags":["kindest/node:v1.37.0"],"Layers":["l/layer.tar"]}]`,
			tags: []string{"kindest/node:v1.37.0"}, config: "abc.json"},
		{name: "official image, two tags", data: `[{"Config":"./blobs/sha256/abc","RepoTags":["docker.io/library/debian:12","docker.io/me/x:1"]}]`,
			tags: []string{"debian:12", "me/x:1"}, config: "blobs/sha256/abc"},
		{name: "registry with a port", data: `[{"Config":"c.json","RepoTags":["localhost:5000/node:v1"]}]`,
			tags: []string{"localhost:5000/node:v1"}, config: "c.json"},
		{name: "no tag", data: `[{"Config":"abc.json","RepoTags":[]}]`, err: "no tag"},
		{name: "a second image without a tag", data: `[{"Config":"a.json","RepoTags":["a:b"]},{"Config":"b.json"}]`, err: "no tag"},
		{name: "a name without a tag", data: `[{"Config":"abc.json","RepoTags":["localhost:5000/node"]}]`, err: "not NAME:TAG"},
		{name: "two images", data: `[{"Config":"a.json","RepoTags":["a:b"]},{"Config":"b.json","RepoTags":["c:d"]}]`, err: "2 images"},
		{name: "no image", data: `[]`, err: "no image"},
		{name: "config outside", data: `[{"Config":"../x","RepoTags":["a:b"]}]`, err: "no usable config"},
		{name: "absolute config", data: `[{"Config":"/etc/passwd","RepoTags":["a:b"]}]`, err: "no usable config"},
		{name: "not JSON", data: `{`, err: "not a docker-archive's"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseDockerManifest([]byte(tt.data))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(e.RepoTags, " ") != strings.Join(tt.tags, " ") || e.Config != tt.config {
				t.Errorf("got tags %q, config %q; want %q, %q", e.RepoTags, e.Config, tt.tags, tt.config)
			}
		})
	}
}

// FuzzParseDockerManifest: any manifest.json is refused or yields images with NAME:TAG tags
// and config paths inside the archive; ParseDockerManifest takes what ParseDockerManifests
// reads when it is one image.
func FuzzParseDockerManifest(f *testing.F) {
	for _, seed := range []string{
		`[{"Config":"abc.json","RepoTags":["kindest/node:v1.37.0"],"Layers":["l/layer.tar"]}]`,
		`[{"Config":"blobs/sha256/abc","RepoTags":["docker.io/library/debian:12"]}]`,
		`[{"Config":"abc.json","RepoTags":[]}]`,
		`[{"Config":"../x","RepoTags":["a:b"]}]`,
		`[{"Config":"/etc/passwd","RepoTags":["a:b"]}]`,
		`[{"Config":"a.json","RepoTags":["quay.io/cilium/cilium:v1.15.19"]},{"Config":"b.json","RepoTags":["quay.io/cilium/operator-generic:v1.15.19"]}]`,
		`[]`, `{}`, `null`, `[null]`, ``,
	} {
		f.Add([]byte(seed))
	}
	re := DockerTag()
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseDockerManifests(data)
		if one, oneErr := ParseDockerManifest(data); oneErr == nil && (err != nil || len(entries) != 1 || one.Config != entries[0].Config) {
			t.Errorf("ParseDockerManifest = %+v where ParseDockerManifests = %+v, %v", one, entries, err)
		}
		if err != nil {
			return
		}
		if len(entries) == 0 {
			t.Error("no image")
		}
		for _, e := range entries {
			if len(e.RepoTags) == 0 {
				t.Error("no tag")
			}
			for _, tag := range e.RepoTags {
				if !re.MatchString(tag) {
					t.Errorf("tag %q is not NAME:TAG", tag)
				}
			}
			c := e.Config
			if c == "" || c == "." || strings.HasPrefix(c, "/") || c == ".." || strings.HasPrefix(c, "../") {
				t.Errorf("config %q is not a path inside the archive", c)
			}
		}
	})
}
