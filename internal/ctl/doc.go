// Package ctl is the logic of `cmkdb ctl`, the operator's command line for
// a running control plane. It talks to the admin API over HTTP exactly as an
// external client would: HTTP Digest with an API key pair, the Atlas error
// envelope decoded into typed errors, Atlas's paginated lists followed to
// the end. Every command prints either an aligned table (text/tabwriter) or,
// with JSON set, the API's own resources, so scripts see what the API says.
//
// Secrets never travel through flags: the API private key and every
// credential of a KMS configuration are read from files, and a secret read
// from a file is scrubbed from any error text before it is shown.
package ctl
