package e2etest

// Race reports whether the tests were built with the race detector (then
// the cmkdb binary under test is built with it too); race.go sets it.
var Race = false
