package recipe

// This file is a build's progress: the step (N of M), kbuild's steps counted against the last
// build of the same source and config, and the ticker that prints them.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nfslab/nfslab/internal/atomicfile"
)

// progressInterval is how often Build reports progress while a step runs.
const progressInterval = 5 * time.Second

// status is what the progress ticker reports: the step (N of M), and while make compiles, the
// kbuild steps done of the number the last build of the same source and config took.
type status struct {
	name     string
	start    time.Time
	expected int // kbuild steps of a whole compile; 0 when unknown
	mu       sync.Mutex
	stage    string
	n, of    int  // the stage's number and how many there are
	counting bool // the stage is the compile: count kbuild steps
	steps    int
	last     string
}

func newStatus(name string, start time.Time, expected int) *status {
	return &status{name: name, start: start, expected: expected}
}

func (s *status) elapsed() string { return time.Since(s.start).Round(time.Second).String() }

func (s *status) setStage(stage string, n, of int, counting bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stage, s.n, s.of, s.counting, s.last = stage, n, of, counting, ""
	if counting {
		s.steps = 0
	}
}

// noTotal forgets the expected number of kbuild steps: an incremental compile takes a few.
func (s *status) noTotal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expected = 0
}

// makeLine counts kbuild's quiet output lines ("  CC      net/socket.o").
func (s *status) makeLine(line string) {
	tag, target, ok := kbuildStep(line)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counting {
		s.steps++
	}
	s.last = tag + " " + target
}

// compiled is the number of kbuild steps the compile took.
func (s *status) compiled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.steps
}

// line renders the status, e.g. "kernel vulnerable-6.1: step 4 of 5, compiling bzImage: 1234 of
// ~2890 kbuild steps (42%), now CC net/socket.o [3m10s]".
func (s *status) line() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := fmt.Sprintf("kernel %s: step %d of %d, %s", s.name, s.n, s.of, s.stage)
	switch {
	case !s.counting || s.steps == 0 && s.last == "":
	case s.expected > 0:
		pct := min(99, 100*s.steps/s.expected)
		out += fmt.Sprintf(": %d of ~%d kbuild steps (%d%%), now %s", s.steps, s.expected, pct, s.last)
	default:
		out += fmt.Sprintf(": %d kbuild steps (the total is known after a first build), now %s", s.steps, s.last)
	}
	return out + " [" + s.elapsed() + "]"
}

// stepsKey identifies what decides how many kbuild steps a compile takes: the source and the
// config, not the patch nor the local version. Recipes that differ only in those share it.
func (r Recipe) stepsKey(sourceVersion string) string {
	var config []string
	for _, l := range strings.Split(string(r.ConfigFragment), "\n") {
		if !strings.Contains(l, "CONFIG_LOCALVERSION") {
			config = append(config, l)
		}
	}
	h := sha256.New()
	for _, f := range []string{r.SourcePackage, sourceVersion, strings.Join(r.BaseConfigs, " "), strings.TrimSpace(strings.Join(config, "\n"))} {
		fmt.Fprintf(h, "%d:%s\n", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// readSteps reads the recorded number of kbuild steps (0 when there is none).
func readSteps(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// writeSteps records the number of kbuild steps a compile took, atomically.
func writeSteps(path string, n int) error {
	if n == 0 {
		return nil
	}
	return atomicfile.WriteBytes(path, 0o644, []byte(fmt.Sprintf("%d\n", n)))
}

// serialized wraps f so that calls from different goroutines never overlap.
func serialized(f func(string)) func(string) {
	var mu sync.Mutex
	return func(s string) {
		mu.Lock()
		defer mu.Unlock()
		f(s)
	}
}

// tick calls progress with the status every progressInterval until the returned function is
// called.
func (s *status) tick(progress func(string)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				progress(s.line())
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// kbuildStep parses a kbuild quiet-mode line: two spaces, an upper-case tag (CC, LD, AR,
// HOSTCC, "CC [M]"...), spaces, the target.
func kbuildStep(line string) (tag, target string, ok bool) {
	rest, ok := strings.CutPrefix(line, "  ")
	if !ok {
		return "", "", false
	}
	fields := strings.Fields(rest)
	if len(fields) < 2 || rest[0] == ' ' {
		return "", "", false
	}
	for _, c := range fields[0] {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "", "", false
		}
	}
	return fields[0], fields[len(fields)-1], true
}
