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
// Errors returned to clients are *mongoerr.Error values carrying the code
// MongoDB would return for the same mistake.
package query
