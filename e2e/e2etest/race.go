//go:build race

package e2etest

func init() { Race = true }
