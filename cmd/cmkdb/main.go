// Command cmkdb is the cmkdb server and tool. All behaviour lives in
// internal/; this file only hands the command line to internal/cli.
package main

import (
	"context"
	"os"

	"github.com/cmkdb/cmkdb/internal/cli"
)

func main() {
	os.Exit(cli.Execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
