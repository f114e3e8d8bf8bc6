package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/cache"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/runstate"
	"github.com/nfslab/nfslab/lab/tty"
)

// cacheListFormat names the JSON document of `nfslab cache list -o json`.
const cacheListFormat = "nfslab-cache/v1"

func newCacheCmd(stdout io.Writer, g *globals) *cobra.Command {
	var cacheDir, output string
	dir := func() (string, error) { return cacheDirOrDefault(cacheDir) }
	list := func(*cobra.Command, []string) error {
		if output != "table" && output != "json" {
			return usageError{fmt.Errorf("-o %q: want table or json", output)}
		}
		d, err := dir()
		if err != nil {
			return err
		}
		entries, err := cache.List(d)
		if err != nil {
			return &lab.LabError{Err: err}
		}
		if output == "json" {
			return writeCacheJSON(stdout, d, entries)
		}
		writeCacheTable(stdout, g.style(stdout), d, entries, time.Now())
		return nil
	}
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List the artefact cache (root filesystems, kernels, node images, Docker disks) and prune it",
		Long: `nfslab caches what it builds (root filesystems, kernels and their build trees, kind node
images and Docker disks) in $NFSLAB_CACHE, else ~/.cache/nfslab. Without a subcommand: list.
Nothing is ever removed by a run or by nfslab cleanup; nfslab cache prune removes entries.`,
		Args: cobra.NoArgs,
		RunE: list,
	}
	cmd.PersistentFlags().StringVar(&cacheDir, "cache-dir", "", "artefact cache (default $NFSLAB_CACHE or ~/.cache/nfslab)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List every cache entry with its kind, size on disk and last use",
		Long: `Every entry of the cache, one a line: its kind, the space it takes on disk (allocated
blocks: the Docker disks are sparse), its last use (nfslab sets it on every cache hit) and its
path in the cache; builds in progress and interrupted ones are marked. The total comes last.`,
		Args: cobra.NoArgs,
		RunE: list,
	}
	listCmd.Flags().StringVarP(&output, "output", "o", "table", "table or json (format "+cacheListFormat+")")
	cmd.AddCommand(listCmd, newCachePruneCmd(stdout, g, dir))
	return cmd
}

func newCachePruneCmd(stdout io.Writer, g *globals, dir func() (string, error)) *cobra.Command {
	var olderThan, maxSize string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove cache entries not used for a while, or the least recently used until the cache fits a size",
		Long: `--older-than AGE removes the entries last used more than AGE ago (30d, 2w, 36h).
--max-size SIZE removes entries, least recently used first, until the cache takes at most SIZE
(20GiB, 500M, 1.5TB). With both, an entry goes when either says so. An entry being built (its
lock is held) or used since a live nfslab run on this cache began is kept, and said so; builds
in progress, interrupted builds (nfslab cleanup's) and the KVM memo are never pruned.

Exit codes: 0 done; 2 bad input; 3 something could not be removed.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			p, err := prunePolicy(olderThan, maxSize, dryRun)
			if err != nil {
				return err
			}
			d, err := dir()
			if err != nil {
				return err
			}
			p.InUseSince, p.InUseBy = liveRunOn(runstate.Registry{Dir: runstate.DefaultDir()}, d)
			entries, err := cache.List(d)
			if err != nil {
				return &lab.LabError{Err: err}
			}
			return prune(stdout, g.style(stdout), entries, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&olderThan, "older-than", "", "remove entries last used more than this long ago (e.g. 30d, 2w, 36h)")
	f.StringVar(&maxSize, "max-size", "", "remove the least recently used entries until the cache takes at most this (e.g. 20GiB)")
	f.BoolVar(&dryRun, "dry-run", false, "only list what would be removed")
	return cmd
}

// prunePolicy reads prune's flags; anything wrong with them is bad input.
func prunePolicy(olderThan, maxSize string, dryRun bool) (cache.Policy, error) {
	p := cache.Policy{Now: time.Now(), DryRun: dryRun}
	if olderThan == "" && maxSize == "" {
		return p, usageError{errors.New("prune: give --older-than AGE, --max-size SIZE or both")}
	}
	var err error
	if olderThan != "" {
		if p.OlderThan, err = cache.ParseAge(olderThan); err != nil {
			return p, usageError{fmt.Errorf("--older-than: %w", err)}
		}
	}
	if maxSize != "" {
		if p.MaxSize, err = cache.ParseSize(maxSize); err != nil {
			return p, usageError{fmt.Errorf("--max-size: %w", err)}
		}
	}
	return p, nil
}

// liveRunOn returns when the oldest live nfslab process registered on the cache dir began, and
// its run ID; zero when none is.
func liveRunOn(reg runstate.Registry, dir string) (time.Time, string) {
	recs, _ := reg.List() // an unreadable record cannot be judged alive either
	abs, _ := filepath.Abs(dir)
	var since time.Time
	var id string
	for _, r := range recs {
		other, _ := filepath.Abs(r.CacheDir)
		if r.CacheDir == "" || other != abs || !reg.Alive(r) {
			continue
		}
		if since.IsZero() || r.Started.Before(since) {
			since, id = r.Started, r.ID
		}
	}
	return since, id
}

// prune applies the policy and says what happened to every entry it chose.
func prune(stdout io.Writer, st tty.Style, entries []cache.Entry, p cache.Policy) error {
	before := cache.Total(entries)
	acts, after := cache.Prune(entries, p)
	failed := 0
	for _, a := range acts {
		e := a.Entry
		what := fmt.Sprintf("%s: %s, %s, last used %s", shortKeys(e.Name), e.Kind, image.FormatSize(e.Size), when(p.Now, e.LastUse))
		switch a.Outcome {
		case cache.Removed:
			fmt.Fprintf(stdout, "%s %s\n", st.Paint(tty.Green, "removed"), what)
		case cache.WouldRemove:
			fmt.Fprintf(stdout, "%s %s\n", st.Paint(tty.Yellow, "would remove"), what)
		case cache.Failed:
			failed++
			fmt.Fprintf(stdout, "%s %s; %v\n", st.Paint(tty.Red, "could not remove"), what, a.Err)
		case cache.KeptInUse:
			fmt.Fprintf(stdout, "%s %s; used since the live run %s on this cache began, %s\n", st.Paint(tty.Dim, "kept"), what, p.InUseBy, when(p.Now, p.InUseSince))
		default:
			fmt.Fprintf(stdout, "%s %s; %s\n", st.Paint(tty.Dim, "kept"), what, strings.TrimPrefix(string(a.Outcome), "kept: "))
		}
	}
	verb := "freed"
	if p.DryRun {
		verb = "would free"
	}
	if len(acts) == 0 {
		fmt.Fprintf(stdout, "nothing to prune; the cache takes %s\n", image.FormatSize(before))
	} else {
		fmt.Fprintf(stdout, "%s %s; the cache takes %s\n", verb, image.FormatSize(before-after), image.FormatSize(after))
	}
	if p.MaxSize > 0 && after > p.MaxSize {
		fmt.Fprintf(stdout, "%s the cache stays over %s: what is left is in use, being built, or not an artefact\n", st.Paint(tty.Yellow, "warning:"), image.FormatSize(p.MaxSize))
	}
	if failed > 0 {
		return &lab.LabError{Err: fmt.Errorf("cache prune: %d entr(ies) could not be removed", failed)}
	}
	return nil
}

func writeCacheTable(w io.Writer, st tty.Style, dir string, entries []cache.Entry, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSIZE\tLAST USE\tENTRY")
	for _, e := range entries {
		note := ""
		switch {
		case e.Build == cache.Building:
			note = "  (being built)"
		case e.Build == cache.Interrupted:
			note = "  (an interrupted build: nfslab cleanup removes it)"
		case e.Keep != "":
			note = "  (" + e.Keep + ")"
		case e.About != "":
			note = "  (" + e.About + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\n", e.Kind, image.FormatSize(e.Size), when(now, e.LastUse), shortKeys(e.Name), st.Paint(tty.Dim, note))
	}
	tw.Flush()
	fmt.Fprintf(w, "total: %d entries, %s on disk in %s\n", len(entries), image.FormatSize(cache.Total(entries)), dir)
}

func writeCacheJSON(w io.Writer, dir string, entries []cache.Entry) error {
	if entries == nil {
		entries = []cache.Entry{}
	}
	doc := struct {
		Format  string        `json:"format"`
		Dir     string        `json:"dir"`
		Entries []cache.Entry `json:"entries"`
		Total   int64         `json:"total"`
	}{cacheListFormat, dir, entries, cache.Total(entries)}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// hexKey is a cache key (a hex sha256) in an entry's name.
var hexKey = regexp.MustCompile(`[0-9a-f]{64}`)

// shortKeys shortens the cache keys in name to their first 12 digits, as nfslab's logs do.
func shortKeys(name string) string {
	return hexKey.ReplaceAllStringFunc(name, func(k string) string { return k[:12] + "…" })
}

// when renders a last use as its UTC time and how long ago it was.
func when(now, t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	ago := now.Sub(t)
	var rel string
	switch {
	case ago < time.Minute:
		rel = "just now"
	case ago < time.Hour:
		rel = fmt.Sprintf("%dm ago", int(ago.Minutes()))
	case ago < 48*time.Hour:
		rel = fmt.Sprintf("%dh ago", int(ago.Hours()))
	default:
		rel = fmt.Sprintf("%dd ago", int(ago.Hours()/24))
	}
	return t.UTC().Format("2006-01-02 15:04") + " (" + rel + ")"
}
