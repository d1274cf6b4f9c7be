package oplog

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// UpdateO is an update's o field in MongoDB's $v: 2 form: the difference
// between the document before and after, {$v: 2, diff: {...}}.
//
// The diff has MongoDB's sections: "u" fields whose value changed, "i"
// fields added, "d" fields removed (value false), and "s<field>" a nested
// diff of an embedded document present before and after. An array that
// changed is replaced whole (a "u" entry) — MongoDB may instead send an
// array diff; both are valid oplog entries, and change streams then
// report the whole array in updatedFields, which MongoDB also does.
func UpdateO(before, after bson.Raw) (bson.Raw, error) {
	diff, err := docDiff(before, after)
	if err != nil {
		return nil, err
	}
	return bson.Marshal(bson.D{{Key: "$v", Value: int32(2)}, {Key: "diff", Value: diff}})
}

func docDiff(before, after bson.Raw) (bson.D, error) {
	oldEls, err := before.Elements()
	if err != nil {
		return nil, err
	}
	newEls, err := after.Elements()
	if err != nil {
		return nil, err
	}
	old := make(map[string]bson.RawValue, len(oldEls))
	for _, e := range oldEls {
		old[e.Key()] = e.Value()
	}
	var u, i, sub bson.D
	seen := make(map[string]bool, len(newEls))
	for _, e := range newEls {
		k, v := e.Key(), e.Value()
		seen[k] = true
		ov, had := old[k]
		switch {
		case !had:
			i = append(i, bson.E{Key: k, Value: v})
		case ov.Type == v.Type && bytes.Equal(ov.Value, v.Value):
		case ov.Type == bson.TypeEmbeddedDocument && v.Type == bson.TypeEmbeddedDocument:
			d, err := docDiff(ov.Document(), v.Document())
			if err != nil {
				return nil, err
			}
			sub = append(sub, bson.E{Key: "s" + k, Value: d})
		default:
			u = append(u, bson.E{Key: k, Value: v})
		}
	}
	var del bson.D
	for _, e := range oldEls {
		if !seen[e.Key()] {
			del = append(del, bson.E{Key: e.Key(), Value: false})
		}
	}
	out := bson.D{}
	if len(del) > 0 {
		out = append(out, bson.E{Key: "d", Value: del})
	}
	if len(u) > 0 {
		out = append(out, bson.E{Key: "u", Value: u})
	}
	if len(i) > 0 {
		out = append(out, bson.E{Key: "i", Value: i})
	}
	return append(out, sub...), nil
}

// IsDiff reports whether an update's o is a $v: 2 diff (an update with
// operators) rather than a replacement document.
func IsDiff(o bson.Raw) bool {
	v, err := o.LookupErr("$v")
	if err != nil {
		return false
	}
	n, ok := v.AsInt64OK()
	return ok && n == 2
}

var errBadDiff = errors.New("oplog: malformed update diff")

// Describe turns a $v: 2 update into a change stream's updateDescription
// parts: the fields set (dotted paths, with their new values) and the
// fields removed.
func Describe(o bson.Raw) (updated bson.D, removed []string, err error) {
	d, ok := o.Lookup("diff").DocumentOK()
	if !ok {
		return nil, nil, errBadDiff
	}
	updated, removed = bson.D{}, []string{}
	if err := describe(d, "", &updated, &removed); err != nil {
		return nil, nil, err
	}
	return updated, removed, nil
}

func describe(diff bson.Raw, prefix string, updated *bson.D, removed *[]string) error {
	els, err := diff.Elements()
	if err != nil {
		return fmt.Errorf("%w: %v", errBadDiff, err)
	}
	for _, e := range els {
		k := e.Key()
		section, ok := e.Value().DocumentOK()
		if !ok {
			return fmt.Errorf("%w: section %q", errBadDiff, k)
		}
		fields, err := section.Elements()
		if err != nil {
			return fmt.Errorf("%w: %v", errBadDiff, err)
		}
		switch {
		case k == "u" || k == "i":
			for _, f := range fields {
				*updated = append(*updated, bson.E{Key: prefix + f.Key(), Value: f.Value()})
			}
		case k == "d":
			for _, f := range fields {
				*removed = append(*removed, prefix+f.Key())
			}
		case strings.HasPrefix(k, "s") && len(k) > 1:
			if err := describe(section, prefix+k[1:]+".", updated, removed); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: section %q", errBadDiff, k)
		}
	}
	return nil
}
