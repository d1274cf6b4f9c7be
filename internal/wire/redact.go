package wire

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// commandShape renders a command for a debug log as its top-level field
// names only. Values are never logged: they are the user's data (documents,
// filters, update values), and data must not reach logs in plaintext any
// more than it may reach the disk.
func commandShape(cmd bson.Raw) string {
	elems, err := bsoncore.Document(cmd).Elements()
	if err != nil {
		return "<malformed>"
	}
	keys := make([]string, 0, len(elems))
	for _, e := range elems {
		keys = append(keys, e.Key())
	}
	return strings.Join(keys, ",")
}
