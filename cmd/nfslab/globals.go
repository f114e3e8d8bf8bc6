package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab/tty"
)

// globals are the flags every command takes.
type globals struct {
	verbose bool
	noColor bool
}

func (g *globals) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.BoolVarP(&g.verbose, "verbose", "v", false, "debug logging on stderr")
	f.BoolVar(&g.noColor, "no-color", false, "no colours in the output (also: NO_COLOR=1; CI=true or output that is not a terminal gets plain lines anyway)")
}

// logger logs warnings, or everything with -v, to w.
func (g *globals) logger(w io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// style is how lines for people are written to w.
func (g *globals) style(w io.Writer) tty.Style { return tty.Detect(w, g.noColor, nil) }

// runArgs rejects arguments to run with a hint, since `nfslab run FILE` is what people type: a
// scenario is named with --scenario.
func runArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("run takes no arguments (got %q): name a scenario with --scenario, e.g. nfslab run --scenario %s", args, args[0])}
	}
	return nil
}
