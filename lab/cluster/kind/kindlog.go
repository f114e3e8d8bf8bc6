package kind

import (
	"fmt"
	"log/slog"

	kindlog "sigs.k8s.io/kind/pkg/log"
)

// kindLogger adapts kind's logger: warnings and errors to slog, its status lines to say.
type kindLogger struct {
	log *slog.Logger
	say func(string)
}

func (l kindLogger) Warn(msg string)                   { l.log.Warn("kind: " + msg) }
func (l kindLogger) Warnf(format string, args ...any)  { l.Warn(fmt.Sprintf(format, args...)) }
func (l kindLogger) Error(msg string)                  { l.log.Error("kind: " + msg) }
func (l kindLogger) Errorf(format string, args ...any) { l.Error(fmt.Sprintf(format, args...)) }
func (l kindLogger) V(level kindlog.Level) kindlog.InfoLogger {
	return kindInfo{l: l, enabled: level <= 0}
}

type kindInfo struct {
	l       kindLogger
	enabled bool
}

func (i kindInfo) Info(msg string) {
	if i.enabled && i.l.say != nil {
		i.l.say(msg)
	}
}
func (i kindInfo) Infof(format string, args ...any) { i.Info(fmt.Sprintf(format, args...)) }
func (i kindInfo) Enabled() bool                    { return i.enabled }
