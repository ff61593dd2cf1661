//go:build !race

package nasty

const raceEnabled = false
