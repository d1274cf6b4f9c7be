//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package local

import "sync"

var dirLock sync.Mutex

// lockDir only excludes writers in this process where flock is not
// available; the local provider is a development tool.
func lockDir(string) (unlock func(), err error) {
	dirLock.Lock()
	return dirLock.Unlock, nil
}
