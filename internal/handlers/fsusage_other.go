//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package handlers

// fsUsage is not measured on this platform: dbStats reports 0.
func fsUsage(string) (used, total int64, err error) { return 0, 0, nil }
