package procgroup

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCommandStopsTheGroup: a cancelled command's child (a sleep the shell started in the
// background) is gone too, not only the shell.
func TestCommandStopsTheGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pidFile := t.TempDir() + "/child"
	cmd := Command(ctx, syscall.SIGTERM, 5*time.Second, "sh", "-c", "sleep 60 & echo $! > "+pidFile+"; wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil && strings.TrimSpace(string(b)) != "" {
			child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	if child == 0 {
		t.Fatal("the child's pid never appeared")
	}
	cancel()
	if err := cmd.Wait(); err == nil {
		t.Error("a cancelled command returned no error")
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(child, 0) != nil {
			return
		}
	}
	t.Errorf("the command's child %d outlived the cancellation", child)
}
