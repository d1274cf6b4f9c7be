package query

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Sort is a compiled sort specification.
type Sort struct {
	keys []sortKey
}

type sortKey struct {
	path  string
	parts []string
	desc  bool
}

// CompileSort compiles a sort document such as {a: 1, "b.c": -1}.
func CompileSort(spec bson.Raw) (*Sort, error) {
	if len(spec) > 0 {
		if err := validateDoc(spec); err != nil {
			return nil, badValue("invalid sort document: %v", err)
		}
	}
	s := &Sort{}
	for _, e := range elems(spec) {
		if e.key == "" {
			return nil, badValue("FieldPath cannot be constructed with empty string")
		}
		desc := false
		switch {
		case isNumeric(e.val.Type):
			f := toNum(e.val).float()
			switch f {
			case 1:
			case -1:
				desc = true
			default:
				return nil, mongoerr15975()
			}
		case e.val.Type == bson.TypeEmbeddedDocument:
			// {$meta: "textScore"} needs text search, which cmkdb lacks.
			return nil, badValue("$meta sort is not supported")
		default:
			return nil, mongoerr15975()
		}
		parts, err := splitFieldPath(0, e.key)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			if p == "" {
				return nil, badValue("FieldPath field names may not be empty strings.")
			}
		}
		s.keys = append(s.keys, sortKey{path: e.key, parts: parts, desc: desc})
	}
	return s, nil
}

func mongoerr15975() error {
	return mongoerr.New(15975, "$sort key ordering must be 1 (for ascending) or -1 (for descending)")
}

// Empty reports whether the sort has no keys.
func (s *Sort) Empty() bool { return len(s.keys) == 0 }

// Key extracts doc's sort key: per sort field, the smallest value the path
// reaches for an ascending field and the largest for a descending one
// (MongoDB's array semantics); a missing field sorts as null and an empty
// array sorts before null. Precomputing keys lets callers sort n documents
// with n key extractions instead of n log n.
func (s *Sort) Key(doc bson.Raw) []bson.RawValue {
	key := make([]bson.RawValue, len(s.keys))
	for i, k := range s.keys {
		key[i] = sortValue(doc, k.parts, k.desc)
	}
	return key
}

func sortValue(doc []byte, parts []string, desc bool) bson.RawValue {
	var best bson.RawValue
	first := true
	walkPath(doc, parts, leafElems, func(v bson.RawValue) bool {
		if isMissing(v) {
			v = rvNull
		}
		if first {
			best, first = v, false
			return false
		}
		c := Compare(v, best)
		if (desc && c > 0) || (!desc && c < 0) {
			best = v
		}
		return false
	})
	if first {
		return rvNull
	}
	return best
}

// CompareKeys compares two keys produced by Key, honouring directions.
func (s *Sort) CompareKeys(a, b []bson.RawValue) int {
	for i, k := range s.keys {
		c := Compare(a[i], b[i])
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// Compare orders two documents by the sort specification.
func (s *Sort) Compare(a, b bson.Raw) int {
	return s.CompareKeys(s.Key(a), s.Key(b))
}

// Less is Compare(a, b) < 0, convenient for sort.Slice.
func (s *Sort) Less(a, b bson.Raw) bool { return s.Compare(a, b) < 0 }
