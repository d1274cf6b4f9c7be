// Package clitest runs `cmkdb ctl` end to end, through the same entry
// point as the binary (cli.Execute): flag parsing, exit codes and what
// lands on stdout and stderr. It is a package of its own so that the
// logic tests of package ctl do not depend on everything the command tree
// links in.
package clitest
