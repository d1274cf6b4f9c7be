package handlers

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What serverStatus and hostInfo report about the machine and the
// process, read from the kernel (Linux's /proc and uname) when asked;
// a figure that cannot be read is left out, never invented.

// memFacts are the process's resident and virtual sizes in MiB
// (/proc/self/statm).
func memFacts() (residentMB, virtualMB int64, ok bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, 0, false
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	rss, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	page := int64(os.Getpagesize())
	return rss * page >> 20, size * page >> 20, true
}

// memTotalMB is the machine's memory in MiB (/proc/meminfo MemTotal).
func memTotalMB() (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb >> 10, err == nil
		}
	}
	return 0, false
}

// osName is the distribution's name (/etc/os-release PRETTY_NAME).
func osName() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// kernel returns the kernel's release and version (uname).
func kernel() (release, version string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", ""
	}
	return string(bytes.TrimRight(u.Release[:], "\x00")), string(bytes.TrimRight(u.Version[:], "\x00"))
}

// cpuArch names the architecture as mongod does (uname -m).
func cpuArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// osType is mongod's os.type.
func osType() string {
	switch runtime.GOOS {
	case "linux":
		return "Linux"
	case "darwin":
		return "Darwin"
	case "windows":
		return "Windows"
	}
	return runtime.GOOS
}
