//go:build !unix

package tail

import (
	"errors"
	"os"
)

type fileID struct{ dev, ino uint64 }

func (id fileID) String() string { return "" }

// idOf: following files by identity needs device and inode numbers, which
// this system's os.FileInfo does not carry.
func idOf(fi os.FileInfo) (fileID, bool) { return fileID{}, false }

func lockFile(path string) (*os.File, error) {
	return nil, errors.New("logtally tail needs a Unix system")
}
