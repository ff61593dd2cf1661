//go:build race

package nasty

// raceEnabled: the race detector slows per-line work about tenfold, so the
// suite scales its largest line counts down (see fullSize).
const raceEnabled = true
