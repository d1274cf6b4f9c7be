//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package handlers

import "golang.org/x/sys/unix"

// fsUsage is the used and total bytes of the file system holding dir
// (dbStats' fsUsedSize and fsTotalSize).
func fsUsage(dir string) (used, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	bsize := int64(st.Bsize)
	total = int64(st.Blocks) * bsize
	return total - int64(st.Bfree)*bsize, total, nil
}
