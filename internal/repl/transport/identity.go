package transport

import (
	"errors"
	"fmt"
	"strings"
)

// cnPrefix is the first segment of every member certificate's common name.
const cnPrefix = "cmkdb-member"

// Identity names a replica-set member: the project and cluster it belongs
// to, and the member itself. It is carried in the common name of the
// member's certificate.
type Identity struct {
	Project, Cluster, Member string
}

// CommonName encodes the identity as a certificate common name,
// cmkdb-member/<project>/<cluster>/<member>.
func (id Identity) CommonName() string {
	return cnPrefix + "/" + id.Project + "/" + id.Cluster + "/" + id.Member
}

// String is the common name.
func (id Identity) String() string { return id.CommonName() }

// validate reports whether the identity round-trips through its common
// name: every part non-empty and free of slashes.
func (id Identity) validate() error {
	for _, p := range [...]struct{ what, v string }{{"project", id.Project}, {"cluster", id.Cluster}, {"member", id.Member}} {
		if p.v == "" {
			return fmt.Errorf("transport: identity has an empty %s", p.what)
		}
		if strings.Contains(p.v, "/") {
			return fmt.Errorf("transport: identity's %s %q contains a slash", p.what, p.v)
		}
	}
	return nil
}

// ParseIdentity parses a common name of the exact form
// cmkdb-member/<project>/<cluster>/<member>, every part non-empty.
func ParseIdentity(cn string) (Identity, error) {
	parts := strings.Split(cn, "/")
	if len(parts) != 4 || parts[0] != cnPrefix {
		return Identity{}, fmt.Errorf("transport: %q is not a member name (%s/<project>/<cluster>/<member>)", cn, cnPrefix)
	}
	id := Identity{Project: parts[1], Cluster: parts[2], Member: parts[3]}
	if id.Project == "" || id.Cluster == "" || id.Member == "" {
		return Identity{}, fmt.Errorf("transport: %q has an empty part", cn)
	}
	return id, nil
}

var errNotMember = errors.New("transport: not a connection of a member stream layer")
