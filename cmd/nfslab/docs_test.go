package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// codeSpan is an inline `code span` of Markdown or of a comment.
var codeSpan = regexp.MustCompile("`([^`]+)`")

// quotedCommands returns the nfslab command lines quoted in text: lines of code blocks (```)
// and comment lines (# …) that start with "nfslab", and `nfslab …` code spans. Trailing "#"
// comments are dropped.
func quotedCommands(text string, comments bool) []string {
	var out []string
	inBlock := false
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inBlock = !inBlock
			continue
		}
		candidate := ""
		switch {
		case inBlock:
			candidate = trimmed
		case comments && strings.HasPrefix(trimmed, "#"):
			candidate = strings.TrimSpace(strings.TrimLeft(trimmed, "#"))
		}
		if candidate == "nfslab" || strings.HasPrefix(candidate, "nfslab ") {
			cmd, _, _ := strings.Cut(candidate, " #")
			out = append(out, strings.TrimSpace(cmd))
		}
		if inBlock {
			continue
		}
		for _, m := range codeSpan.FindAllStringSubmatch(line, -1) {
			if m[1] == "nfslab" || strings.HasPrefix(m[1], "nfslab ") {
				out = append(out, m[1])
			}
		}
	}
	return out
}

// parses checks that a command line names an existing command with flags it has and
// arguments it accepts, without running it. A bare command name ("nfslab report merge") is a
// mention of the command, not a command line: only its existence is checked.
func parses(line string) error {
	args := strings.Fields(line)[1:]
	root := newRootCmd(io.Discard, io.Discard)
	cmd, rest, err := root.Find(args)
	if err != nil || len(rest) == 0 {
		return err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return err
	}
	if cmd.Args != nil {
		return cmd.Args(cmd, cmd.Flags().Args())
	}
	return cobra.NoArgs(cmd, cmd.Flags().Args())
}

// TestDocumentedCommandsParse: every nfslab command line quoted in README.md, in the comments
// of the built-in scenarios and in the commands' own help exists as written.
func TestDocumentedCommandsParse(t *testing.T) {
	sources := map[string][]string{}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sources["README.md"] = quotedCommands(string(readme), false)
	files, err := filepath.Glob("../../scenarios/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("scenario files: %v, %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources[filepath.Base(f)] = quotedCommands(string(b), true)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		sources["help of "+c.CommandPath()] = quotedCommands(c.Long+"\n"+c.Example, true)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(io.Discard, io.Discard))

	total := 0
	for src, lines := range sources {
		for _, l := range lines {
			total++
			if err := parses(l); err != nil {
				t.Errorf("%s: %q does not parse: %v", src, l, err)
			}
		}
	}
	if len(sources["README.md"]) < 5 || len(sources["failover.yaml"]) == 0 {
		t.Errorf("found too few commands to check (README %d, failover.yaml %d): is the extraction broken?", len(sources["README.md"]), len(sources["failover.yaml"]))
	}
	t.Logf("%d quoted command lines checked", total)
}

func TestQuotedCommands(t *testing.T) {
	text := "Run `nfslab run --scenario x` or `nfslab`.\n```sh\nnfslab scenarios   # list\n  nfslab kernel list\necho nfslab run\n```\n# nfslab run FILE\n"
	got := strings.Join(quotedCommands(text, true), "|")
	if want := "nfslab run --scenario x|nfslab|nfslab scenarios|nfslab kernel list|nfslab run FILE"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	for line, ok := range map[string]bool{
		"nfslab run --scenario FILE": true,
		"nfslab run FILE":            false,
		"nfslab run --frobnicate":    false,
		"nfslab kernel build X":      true,
		"nfslab frobnicate":          false,
		"nfslab cleanup --dry-run":   true,
		"nfslab kernel build":        true, // a mention of the command
	} {
		if err := parses(line); (err == nil) != ok {
			t.Errorf("parses(%q) = %v, want ok=%v", line, err, ok)
		}
	}
}
