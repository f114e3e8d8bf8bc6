package main

import (
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
