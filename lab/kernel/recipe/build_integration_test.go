package recipe

import (
	"log/slog"
	"os"
	"testing"
)

// TestBuildKernel runs a real build (15-25 minutes on 2 shared cores) when
// NFSLAB_KERNEL_BUILD_CACHE names a cache directory, e.g.
//
//	NFSLAB_KERNEL_BUILD_CACHE=$HOME/.cache/nfslab go test -v -timeout 90m -run TestBuildKernel ./lab/kernel/recipe/
func TestBuildKernel(t *testing.T) {
	cache := os.Getenv("NFSLAB_KERNEL_BUILD_CACHE")
	if cache == "" {
		t.Skip("set NFSLAB_KERNEL_BUILD_CACHE to a cache directory to build a kernel")
	}
	name := os.Getenv("NFSLAB_KERNEL_RECIPE")
	if name == "" {
		name = "vulnerable-6.1"
	}
	r, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := Build(t.Context(), r, cache, log, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(b.BzImage)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %+v; bzImage %d bytes", b, st.Size())
}
