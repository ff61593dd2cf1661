//go:build race

package e2e

// raceEnabled scales the bounds of the few timing checks.
const raceEnabled = true
