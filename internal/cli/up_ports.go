package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/cmkdb/cmkdb/internal/durable"
)

// Ports picked with port 0 are kept in DIR/ports.json and asked for again
// on the next run, so connection strings, up.json and external clients of
// the admin API keep working across restarts. A kept port someone else
// took meanwhile is an error naming the port and the way out, never a
// silent switch to another port.

// keptPorts is DIR/ports.json.
type keptPorts struct {
	Port    int `json:"port,omitempty"`
	APIPort int `json:"apiPort,omitempty"`
}

func portsFile(dir string) string { return filepath.Join(dir, "ports.json") }

// readPorts returns the ports kept in dir; none when the file is absent.
// A file that exists and cannot be read is an error: starting on other
// ports would change every connection string without saying why.
func readPorts(dir string) (keptPorts, error) {
	var p keptPorts
	b, err := os.ReadFile(portsFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("reading the kept ports: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil || p.Port < 0 || p.Port > 65535 || p.APIPort < 0 || p.APIPort > 65535 {
		return p, fmt.Errorf("%s is damaged (delete it to pick new ports): %v", portsFile(dir), err)
	}
	return p, nil
}

// keepPort records one port in dir's ports.json.
func keepPort(dir string, set func(*keptPorts)) error {
	p, err := readPorts(dir)
	if err != nil {
		return err
	}
	set(&p)
	js, _ := json.MarshalIndent(p, "", "  ")
	return durable.WriteFile(portsFile(dir), append(js, '\n'), 0o600)
}

// listenKept listens on bind:port; with port 0 it asks for the port kept
// in dir (what, e.g. "port", names it in ports.json), or a free one
// that is then kept.
func listenKept(dir, bind string, port int, what string) (net.Listener, error) {
	kept, err := readPorts(dir)
	if err != nil {
		return nil, err
	}
	keptPort := kept.Port
	if what == "apiPort" {
		keptPort = kept.APIPort
	}
	fromFile := port == 0 && keptPort != 0
	if fromFile {
		port = keptPort
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(port)))
	if err != nil {
		if fromFile && errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("port %d, kept in %s so that connection strings stay the same, is in use: stop what uses it, or choose a port with --%s",
				port, portsFile(dir), map[string]string{"port": "port", "apiPort": "api-port"}[what])
		}
		return nil, fmt.Errorf("listen: %w", err)
	}
	got := ln.Addr().(*net.TCPAddr).Port
	if got != keptPort {
		if err := keepPort(dir, func(p *keptPorts) {
			if what == "apiPort" {
				p.APIPort = got
			} else {
				p.Port = got
			}
		}); err != nil {
			_ = ln.Close()
			return nil, err
		}
	}
	return ln, nil
}
