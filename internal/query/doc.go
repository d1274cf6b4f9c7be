// Package query implements MongoDB's query-language semantics over BSON
// documents, independently of any storage engine: value comparison and
// ordering, filter matching, projection, sorting, update operators, upsert
// document construction, aggregation pipelines with their expression
// language, and the order-preserving index key encoding plus index
// bounds derivation a key-value store needs to serve queries.
//
// Everything here is pure: no I/O except through the CollectionSource a
// caller passes to $lookup, and no package-level mutable state. Read paths
// (matching, comparison, sort keys, expressions) work directly on bson.Raw
// and bson.RawValue so scans do not decode documents; write paths (updates,
// projection, pipeline stages that reshape documents) use a small mutable
// document tree (tree.go) that is re-encoded once at the end.
//
// Updates support MongoDB's array operators: the positional "$" (the
// array position through which the statement's filter matched, which
// Matcher.MatchPosition reports), "$[]" and "$[<identifier>]" with the
// arrayFilters option; they are expanded against the document before any
// operator applies (arrayfilters.go).
//
// Paths are bounded before they are split, with MongoDB's limits: 180
// components in a query predicate, 200 in any other field path or update
// path, and an update may not nest a document deeper than 180 levels
// (path.go). A hostile path therefore costs one pass over its bytes.
//
// Errors returned to clients are *mongoerr.Error values carrying the code
// MongoDB would return for the same mistake.
//
// The semantics are pinned by data-driven cases in testdata/semantics
// (filter matching, updates, positional and arrayFilters updates, upserts,
// projection and sort), run by TestDataDriven with cockroachdb/datadriven;
// "go test -run TestDataDriven -rewrite" regenerates the expected output
// for review.
package query
