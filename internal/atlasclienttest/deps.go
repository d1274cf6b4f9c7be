// Package atlasclienttest is a placeholder.
package atlasclienttest

import (
	"github.com/mongodb-forks/digest"
	"go.mongodb.org/atlas/mongodbatlas"
)

var (
	_ = digest.NewTransport
	_ = mongodbatlas.NewClient
)
