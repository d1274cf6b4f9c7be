package query

import (
	"context"
	"errors"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Pipeline-style updates: an update given as an array of aggregation
// stages, run on each document it updates. MongoDB 7.0 allows only the
// stages that turn one document into one document.
var updatePipelineStages = map[string]bool{
	"$addFields": true, "$set": true, "$project": true, "$unset": true,
	"$replaceRoot": true, "$replaceWith": true,
}

// CompileUpdatePipeline compiles a pipeline-style update. Its result
// replaces the document (an _id it leaves out is kept; one it changes is
// refused), so it is applied like a replacement but reported as an update.
func CompileUpdatePipeline(stages []bson.Raw) (*Update, error) {
	for _, s := range stages {
		if err := validateDoc(s); err != nil {
			return nil, badValue("invalid pipeline stage: %v", err)
		}
		es := elems(s)
		if len(es) != 1 {
			return nil, mongoerr.New(40323, "A pipeline stage specification object must contain exactly one field.")
		}
		if !updatePipelineStages[es[0].key] {
			if _, err := compileStage(es[0].key, es[0].val, nil); isUnknownStage(err) {
				return nil, err
			}
			return nil, mongoerr.New(mongoerr.InvalidOptions, "%s is not allowed to be used within an update", es[0].key)
		}
	}
	p, err := CompilePipeline(stages, nil)
	if err != nil {
		return nil, err
	}
	return &Update{pipeline: p}, nil
}

// isUnknownStage reports whether a stage failed to compile because its
// name is unknown (mongod reports that before the update rule).
func isUnknownStage(err error) bool {
	return err != nil && mongoerr.CodeOf(err) == 40324
}

// IsPipeline reports whether u is a pipeline-style update.
func (u *Update) IsPipeline() bool { return u.pipeline != nil }

// runPipeline applies a pipeline-style update to doc.
func (u *Update) runPipeline(doc bson.Raw, oldID any, hadID bool, opts ApplyOptions) (*mdoc, error) {
	it, err := u.pipeline.Run(context.Background(), NewSliceIterator([]bson.Raw{doc}))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out, err := it.Next(context.Background())
	if errors.Is(err, io.EOF) {
		return nil, mongoerr.New(mongoerr.InternalError, "the update pipeline produced no document")
	}
	if err != nil {
		return nil, err
	}
	nd, err := decodeDoc(out)
	if err != nil {
		return nil, err
	}
	return replaceDoc(nd, oldID, hadID, opts)
}
