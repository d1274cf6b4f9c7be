package wire

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// IsSensitive reports whether a command's body must not be logged: it
// carries credentials or a SASL payload. The list follows the driver
// command-monitoring spec plus the user commands that take passwords. Names
// are compared case-insensitively so a misspelt auth command (which fails
// as CommandNotFound) is still not logged; a hello carrying
// speculativeAuthenticate holds a SASL payload too.
func IsSensitive(name string, cmd bson.Raw) bool {
	switch strings.ToLower(name) {
	case "authenticate", "saslstart", "saslcontinue", "getnonce",
		"createuser", "updateuser", "copydbgetnonce", "copydbsaslstart", "copydb":
		return true
	case "hello", "ismaster":
		_, err := cmd.LookupErr("speculativeAuthenticate")
		return err == nil
	}
	return false
}

// maxLoggedBody bounds how much of a command body a debug log line carries.
const maxLoggedBody = 1024

// loggableBody renders a command for a debug log, redacted if sensitive.
func loggableBody(name string, cmd bson.Raw) string {
	if IsSensitive(name, cmd) {
		return "<redacted>"
	}
	s, truncated := bsoncore.Document(cmd).StringN(maxLoggedBody)
	if truncated {
		s += "…"
	}
	return s
}
