package query

// MaxBlockingBytes is what one blocking stage may hold in memory
// ($facet, $bucketAuto, $setWindowFields, $graphLookup, $lookup's
// results): explain reports it among its serverParameters.
const MaxBlockingBytes = maxBlockingBytes
