// Package cli implements logtally's client subcommands: they talk to a
// running logtally server over its HTTP API (default http://localhost:8080).
//
// Each subcommand is a function taking the arguments after the subcommand
// name, stdout and stderr, and returning an error that the caller prints
// before exiting 1. flag.ErrHelp is returned when -h/--help was asked for
// (usage has then already been printed to stderr); callers should exit 0
// for it.
package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/term"
)

// DefaultAddr is the base URL of the logtally HTTP API used when --addr is
// not given.
const DefaultAddr = "http://localhost:8080"

// stdin is where replay reads the file named "-"; tests replace it.
var stdin io.Reader = os.Stdin

// lockedWriter serialises writes to stderr from the senders and the
// progress display; with a terminal it first clears the progress line.
type lockedWriter struct {
	mu  sync.Mutex
	w   io.Writer
	tty bool
}

func (l *lockedWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tty {
		io.WriteString(l.w, "\r\x1b[K")
	}
	fmt.Fprintf(l.w, format, args...)
}

// newFlagSet returns a ContinueOnError FlagSet whose usage (printed on -h or
// on a parse error) goes to stderr and starts with the given synopsis.
func newFlagSet(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\n%s\n\nflags:\n", synopsis, description)
		fs.PrintDefaults()
	}
	return fs
}

// flagWasSet reports whether the named flag was given on the command line.
func flagWasSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// baseURL validates and normalises the --addr value: a missing scheme means
// http, and a trailing slash is dropped.
func baseURL(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("--addr must not be empty")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("invalid --addr %q: %v", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("invalid --addr %q: scheme must be http or https", addr)
	}
	if u.Host == "" {
		return "", fmt.Errorf("invalid --addr %q: missing host", addr)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// apiError turns a non-2xx answer into an error carrying the server's JSON
// error message ({"error": "..."}) or, failing that, the start of its body.
func apiError(method, path string, resp *http.Response, body []byte) error {
	msg := ""
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	} else {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if !utf8.ValidString(msg) {
			msg = fmt.Sprintf("%q", msg)
		}
	}
	if msg == "" {
		return fmt.Errorf("%s %s: server answered %s", method, path, resp.Status)
	}
	return fmt.Errorf("%s %s: server answered %s: %s", method, path, resp.Status, msg)
}

// terminalWidth returns the width in columns of w when it is a terminal, and
// ok=false otherwise.
func terminalWidth(w io.Writer) (width int, ok bool) {
	f, isFile := w.(*os.File)
	if !isFile {
		return 0, false
	}
	fd := int(f.Fd())
	if !term.IsTerminal(fd) {
		return 0, false
	}
	width, _, err := term.GetSize(fd)
	if err != nil || width <= 0 {
		return 80, true
	}
	return width, true
}

// formatCount renders n with thousands separators: 1286 → "1,286".
func formatCount(n int64) string {
	neg := n < 0
	var u uint64
	if neg {
		u = uint64(-(n + 1)) + 1
	} else {
		u = uint64(n)
	}
	s := fmt.Sprint(u)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	pre := len(s) % 3
	if pre == 0 {
		pre = 3
	}
	b.WriteString(s[:pre])
	for i := pre; i < len(s); i += 3 {
		b.WriteByte(',')
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// formatBytes renders a byte count with binary units: "1.5 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// displayWidth is the number of terminal columns s takes, counting every
// rune as one column (true for the ASCII and block characters used here).
func displayWidth(s string) int { return utf8.RuneCountInString(s) }

// truncate cuts s to at most width columns, ending it with "…" when cut.
func truncate(s string, width int) string {
	if width <= 0 || displayWidth(s) <= width {
		return s
	}
	r := []rune(s)
	if width == 1 {
		return "…"
	}
	return string(r[:width-1]) + "…"
}
