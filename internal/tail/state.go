package tail

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const stateVersion = 1

// State is what the state file holds: every file being read, by identity,
// with the offset up to which the server acknowledged its lines.
type State struct {
	Version int `json:"version"`
	// ID is random, made when the state file is created, and part of every
	// Idempotency-Key: two hosts (or two state files) never share keys.
	ID string `json:"id"`
	// NextSerial numbers the readings of files: each Entry gets a new one
	// when it is created or read again from offset 0 (after a truncation),
	// so the same byte range of two different contents never has one key.
	NextSerial uint64   `json:"next_serial"`
	Files      []*Entry `json:"files"`

	path string
}

// Entry is one file (device and inode, checked by a fingerprint of its
// first bytes).
type Entry struct {
	Path   string `json:"path"` // where it was last found by a FILE argument
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Serial uint64 `json:"serial"`
	// FP is the hex SHA-256 prefix of the first FPLen bytes of the file
	// (FPLen grows to fingerprintBytes as the file does).
	FP    string `json:"fingerprint"`
	FPLen int    `json:"fingerprint_len"`
	// Offset is where the next unsent line starts: every line before it
	// was acknowledged by ingest (or was blank).
	Offset int64 `json:"offset"`
	// Pending is the chunk [Offset, Pending.End) sent (or about to be
	// sent) and not yet acknowledged; after a crash it is sent again with
	// the same key before anything else of the file.
	Pending *Pending `json:"pending,omitempty"`
	// Rotated: no FILE argument names this file any more (renamed or
	// deleted); it is read to its end and then forgotten.
	Rotated bool `json:"rotated,omitempty"`
}

// Pending is a chunk whose acknowledgement was not yet recorded.
type Pending struct {
	End   int64     `json:"end"`
	Key   string    `json:"key"`
	Lines int64     `json:"lines"`
	Since time.Time `json:"since"` // just before its first attempt
}

// loadState reads the state file at path; a missing file is a new state.
// A file that cannot be read or parsed is an error, not a fresh start:
// starting over would send every file again.
func loadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		id := make([]byte, 4)
		_, _ = rand.Read(id)
		return &State{Version: stateVersion, ID: hex.EncodeToString(id), NextSerial: 1, path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state file %s is damaged (%v); move it away to start over, which sends the files again from -from", path, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("state file %s has version %d, this logtally knows %d", path, s.Version, stateVersion)
	}
	if s.ID == "" || !keyTokenOK(s.ID) {
		return nil, fmt.Errorf("state file %s: bad id %q", path, s.ID)
	}
	s.path = path
	s.NextSerial = max(s.NextSerial, 1)
	for _, e := range s.Files {
		s.NextSerial = max(s.NextSerial, e.Serial+1)
	}
	return &s, nil
}

func keyTokenOK(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return len(s) <= 16
}

// save writes the state atomically and durably: a temporary file in the
// same directory, fsync, rename over the state file, fsync of the
// directory. A crash leaves the old or the new state, never a mix.
func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("state file: sync %s: %w", dir, err)
		}
	}
	return nil
}

func (s *State) newSerial() uint64 {
	n := s.NextSerial
	s.NextSerial++
	return n
}

func (s *State) remove(e *Entry) {
	for i, x := range s.Files {
		if x == e {
			s.Files = append(s.Files[:i], s.Files[i+1:]...)
			return
		}
	}
}
