package cli

import (
	"fmt"
	"strings"
	"time"
)

// startProgress shows replay progress on stderr until the returned stop
// function is called: a redrawn bar when stderr is a terminal, otherwise a
// plain line every plainProgressInterval.
func (r *replayer) startProgress(start time.Time) (stop func()) {
	if r.opts.noProgress {
		return func() {}
	}
	interval := plainProgressInterval
	if r.errOut.tty {
		interval = ttyProgressInterval
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				if r.errOut.tty {
					r.errOut.mu.Lock()
					fmt.Fprint(r.errOut.w, "\r\x1b[K")
					r.errOut.mu.Unlock()
				}
				return
			case now := <-t.C:
				if r.errOut.tty {
					line := r.progressBar(now.Sub(start), r.ttyWidth)
					r.errOut.mu.Lock()
					fmt.Fprint(r.errOut.w, "\r\x1b[K"+line)
					r.errOut.mu.Unlock()
				} else {
					r.errOut.printf("%s\n", r.progressLine(now.Sub(start)))
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// progressNumbers are the figures both progress displays show.
type progressNumbers struct {
	read, total int64 // bytes; total < 0 when unknown
	fraction    float64
	lines       int64
	linesPerSec float64
	eta         time.Duration // < 0 when unknown
	retries     int64
}

func (r *replayer) progressNumbers(elapsed time.Duration) progressNumbers {
	p := progressNumbers{
		read:    r.stats.bytesRead.Load(),
		total:   r.total,
		lines:   r.stats.ackLines.Load(),
		retries: r.stats.retries.Load(),
		eta:     -1,
	}
	secs := elapsed.Seconds()
	if secs > 0 {
		p.linesPerSec = float64(p.lines) / secs
	}
	if p.total > 0 {
		p.fraction = min(float64(p.read)/float64(p.total), 1)
		if p.read > 0 && secs > 0 {
			rate := float64(p.read) / secs
			p.eta = time.Duration(float64(p.total-p.read) / rate * float64(time.Second))
			p.eta = max(p.eta, 0)
		}
	}
	return p
}

func formatETA(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// progressLine is the plain progress report for a non-terminal stderr.
func (r *replayer) progressLine(elapsed time.Duration) string {
	p := r.progressNumbers(elapsed)
	var b strings.Builder
	b.WriteString("replay: ")
	if p.total >= 0 {
		fmt.Fprintf(&b, "%s of %s (%.0f%%)", formatBytes(p.read), formatBytes(p.total), p.fraction*100)
	} else {
		fmt.Fprintf(&b, "%s read", formatBytes(p.read))
	}
	fmt.Fprintf(&b, ", %s lines delivered, %s lines/s", formatCount(p.lines), formatCount(int64(p.linesPerSec)))
	if p.eta >= 0 {
		fmt.Fprintf(&b, ", ETA %s", formatETA(p.eta))
	}
	fmt.Fprintf(&b, ", %s retries", formatCount(p.retries))
	return b.String()
}

// progressBar is the one-line bar for a terminal of the given width:
// " 45% ████████░░░░ 12.3 MiB/27.1 MiB  45,123 lines/s  ETA 0:12".
func (r *replayer) progressBar(elapsed time.Duration, width int) string {
	p := r.progressNumbers(elapsed)
	var info string
	if p.total >= 0 {
		info = fmt.Sprintf(" %s/%s  %s lines/s  ETA %s", formatBytes(p.read), formatBytes(p.total),
			formatCount(int64(p.linesPerSec)), formatETA(p.eta))
	} else {
		info = fmt.Sprintf(" %s  %s lines  %s lines/s", formatBytes(p.read),
			formatCount(p.lines), formatCount(int64(p.linesPerSec)))
	}
	if p.retries > 0 {
		info += fmt.Sprintf("  %s retries", formatCount(p.retries))
	}
	if p.total < 0 {
		return truncate("replay:"+info, width-1)
	}
	head := fmt.Sprintf("%3.0f%% ", p.fraction*100)
	// Leave the last column free so the cursor never wraps.
	barW := width - 1 - displayWidth(head) - displayWidth(info)
	if barW < 5 {
		return truncate(head+strings.TrimSpace(info), width-1)
	}
	filled := int(p.fraction * float64(barW))
	return head + strings.Repeat("█", filled) + strings.Repeat("░", barW-filled) + info
}
