package reports

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium runs headless Chromium on a file with extra arguments (--dump-dom, --screenshot=…)
// and returns its standard output and the console messages it logged. Nothing can leave the
// machine: background services are off and every host name resolves to nothing.
func chromium(t *testing.T, bin, page string, args ...string) (stdout []byte, console []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir(), `--host-resolver-rules=MAP * ~NOTFOUND`,
		"--enable-logging=stderr", "--v=0", "--window-size=1200,1400",
	}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), "file://"+page)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	for _, l := range strings.Split(errb.String(), "\n") {
		if strings.Contains(l, ":CONSOLE") {
			console = append(console, l)
		}
	}
	return out.Bytes(), console
}

// TestHTMLInChromium renders report.html in headless Chromium: the page it builds must have
// the structure the pure-Go test checks, load nothing (the console would report a blocked
// fetch), and be drawn with its style sheet (a screenshot shows the timeline's colours).
func TestHTMLInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install chromium)")
	}
	r := sample()
	r.Cells = append([]Cell{stuckCell()}, r.Cells...)
	dir := t.TempDir()
	if err := WriteHTML(dir, r); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, HTMLFile)

	dom, console := chromium(t, bin, page, "--dump-dom")
	if len(console) > 0 {
		t.Errorf("the console has messages (a blocked fetch?):\n%s", strings.Join(console, "\n"))
	}
	checkPage(t, parseDOM(t, bytes.NewReader(dom)), r)

	shot := filepath.Join(t.TempDir(), "report.png")
	chromium(t, bin, page, "--screenshot="+shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// The first cell's timeline is on screen: backend A's band, backend B's band and the
	// stuck probe have their colours from the style sheet (unstyled SVG would be black).
	for name, c := range map[string]color.RGBA{
		"backend A band": {0xf5, 0xc6, 0xc2, 0xff},
		"backend B band": {0xbf, 0xe8, 0xcb, 0xff},
		"stuck probe":    {0xc0, 0x39, 0x2b, 0xff},
	} {
		if n := countColour(img, c); n < 50 {
			t.Errorf("screenshot: %d pixels of the %s's colour %v, want at least 50", n, name, c)
		}
	}
}

// countColour counts the pixels within a small distance of c.
func countColour(img image.Image, c color.RGBA) int {
	near := func(a uint32, b uint8) bool { d := int(a>>8) - int(b); return d >= -3 && d <= 3 }
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r, c.R) && near(g, c.G) && near(bl, c.B) {
				n++
			}
		}
	}
	return n
}
