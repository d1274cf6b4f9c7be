// Package mongoerr defines the MongoDB server error codes cmkdb returns, so
// that drivers raise the exceptions users expect (DuplicateKeyError for
// 11000, OperationFailure with the right code for the rest).
package mongoerr

import (
	"errors"
	"fmt"
)

// Code is a MongoDB server error code.
type Code int32

// The codes cmkdb uses, with MongoDB's numbers.
const (
	InternalError                 Code = 1
	BadValue                      Code = 2
	NoSuchKey                     Code = 4
	FailedToParse                 Code = 9
	TypeMismatch                  Code = 14
	Unauthorized                  Code = 13
	AuthenticationFailed          Code = 18
	IllegalOperation              Code = 20
	NamespaceNotFound             Code = 26
	IndexNotFound                 Code = 27
	PathNotViable                 Code = 28
	ConflictingUpdateOperators    Code = 40
	CursorNotFound                Code = 43
	NamespaceExists               Code = 48
	DollarPrefixedFieldName       Code = 52
	InvalidIdField                Code = 53
	NotSingleValueField           Code = 54
	CommandNotFound               Code = 59
	ImmutableField                Code = 66
	InvalidOptions                Code = 72
	InvalidNamespace              Code = 73
	IndexOptionsConflict          Code = 85
	IndexKeySpecsConflict         Code = 86
	ProtocolError                 Code = 17
	UserNotFound                  Code = 11
	OperationFailed               Code = 96
	Location51024                 Code = 51024
	DuplicateKey                  Code = 11000
	InvalidLength                 Code = 16
	NotImplemented                Code = 238
	ObjectIsBusy                  Code = 314
	BSONObjectTooLarge            Code = 10334
	Location15955                 Code = 15955
	NodeDisabled                  Code = 189 // "PrimarySteppedDown"-class transient: drivers retry reads later
	EmptyFieldName                Code = 56
	InvalidPipelineOperator       Code = 168
	CannotIndexParallelArrays     Code = 171
	Location31249                 Code = 31249 // projection: path collision (prefix)
	Location31250                 Code = 31250 // projection: path collision
	Location31253                 Code = 31253 // projection: inclusion in exclusion projection
	Location31254                 Code = 31254 // projection: exclusion in inclusion projection
	InvalidBSON                   Code = 22
	MechanismUnavailable          Code = 334
	UnsupportedOpQueryCommand     Code = 352
	CannotCreateIndex             Code = 67
	InvalidIndexSpecOption        Code = 197 // InvalidIndexSpecificationOption
	Overflow                      Code = 15
	QueryFeatureNotAllowed        Code = 224
	MaxTimeMSExpired              Code = 50
	DocumentValidationFailure     Code = 121
	NotAReplicaSet                Code = 123
	CappedPositionLost            Code = 136
	Interrupted                   Code = 11601
	ClientMetadataCannotBeMutated Code = 186
	// EncryptionKeyUnavailable is cmkdb's own code: a disabled node's
	// answer to data commands (its customer master key is unusable).
	EncryptionKeyUnavailable Code = 41001

	// Replica sets.
	UnsatisfiableWriteConcern                Code = 100
	NotWritablePrimary                       Code = 10107
	NotPrimaryNoSecondaryOk                  Code = 13435
	InterruptedDueToReplStateChange          Code = 11602
	BackgroundOperationInProgressForDatabase Code = 12586
	NotYetInitialized                        Code = 94
	NoSuchTransaction                        Code = 251
	IncompleteTransactionHistory             Code = 217
	TransactionTooOld                        Code = 225
	ExceededTimeLimit                        Code = 262
	UnknownReplWriteConcern                  Code = 79
	AlreadyInitialized                       Code = 23
	NoReplicationEnabled                     Code = 76
	CommandNotSupported                      Code = 115

	// Transactions.
	WriteConflict                      Code = 112
	ConflictingOperationInProgress     Code = 117
	TransactionCommitted               Code = 256
	OperationNotSupportedInTransaction Code = 263
	TransactionExceededLifetimeLimit   Code = 290

	// Change streams.
	InvalidResumeToken      Code = 260
	ChangeStreamFatalError  Code = 280
	ChangeStreamHistoryLost Code = 286
)

var names = map[Code]string{
	241:                        "ConversionFailure",
	292:                        "QueryExceededMemoryLimitNoDiskUseAllowed",
	InvalidResumeToken:         "InvalidResumeToken",
	ChangeStreamFatalError:     "ChangeStreamFatalError",
	ChangeStreamHistoryLost:    "ChangeStreamHistoryLost",
	InternalError:              "InternalError",
	BadValue:                   "BadValue",
	NoSuchKey:                  "NoSuchKey",
	FailedToParse:              "FailedToParse",
	TypeMismatch:               "TypeMismatch",
	Unauthorized:               "Unauthorized",
	AuthenticationFailed:       "AuthenticationFailed",
	IllegalOperation:           "IllegalOperation",
	NamespaceNotFound:          "NamespaceNotFound",
	IndexNotFound:              "IndexNotFound",
	PathNotViable:              "PathNotViable",
	ConflictingUpdateOperators: "ConflictingUpdateOperators",
	CursorNotFound:             "CursorNotFound",
	NamespaceExists:            "NamespaceExists",
	DollarPrefixedFieldName:    "DollarPrefixedFieldName",
	InvalidIdField:             "InvalidIdField",
	NotSingleValueField:        "NotSingleValueField",
	CommandNotFound:            "CommandNotFound",
	ImmutableField:             "ImmutableField",
	InvalidOptions:             "InvalidOptions",
	InvalidNamespace:           "InvalidNamespace",
	IndexOptionsConflict:       "IndexOptionsConflict",
	IndexKeySpecsConflict:      "IndexKeySpecsConflict",
	ProtocolError:              "ProtocolError",
	UserNotFound:               "UserNotFound",
	OperationFailed:            "OperationFailed",
	DuplicateKey:               "DuplicateKey",
	InvalidLength:              "InvalidLength",
	NotImplemented:             "NotImplemented",
	ObjectIsBusy:               "ObjectIsBusy",
	BSONObjectTooLarge:         "BSONObjectTooLarge",
	NodeDisabled:               "PrimarySteppedDown",
	Location51024:              "Location51024",
	Location15955:              "Location15955",
	EmptyFieldName:             "EmptyFieldName",
	InvalidPipelineOperator:    "InvalidPipelineOperator",
	CannotIndexParallelArrays:  "CannotIndexParallelArrays",
	InvalidBSON:                "InvalidBSON",
	MechanismUnavailable:       "MechanismUnavailable",
	UnsupportedOpQueryCommand:  "UnsupportedOpQueryCommand",
	CannotCreateIndex:          "CannotCreateIndex",
	InvalidIndexSpecOption:     "InvalidIndexSpecificationOption",
	Overflow:                   "Overflow",
	QueryFeatureNotAllowed:     "QueryFeatureNotAllowed",
	MaxTimeMSExpired:           "MaxTimeMSExpired",
	DocumentValidationFailure:  "DocumentValidationFailure",
	NotAReplicaSet:             "NotAReplicaSet",
	CappedPositionLost:         "CappedPositionLost",
	EncryptionKeyUnavailable:   "EncryptionKeyUnavailable",

	UnsatisfiableWriteConcern:                "UnsatisfiableWriteConcern",
	NotWritablePrimary:                       "NotWritablePrimary",
	NotPrimaryNoSecondaryOk:                  "NotPrimaryNoSecondaryOk",
	InterruptedDueToReplStateChange:          "InterruptedDueToReplStateChange",
	Interrupted:                              "Interrupted",
	ClientMetadataCannotBeMutated:            "ClientMetadataCannotBeMutated",
	BackgroundOperationInProgressForDatabase: "BackgroundOperationInProgressForDatabase",
	NotYetInitialized:                        "NotYetInitialized",
	NoSuchTransaction:                        "NoSuchTransaction",
	IncompleteTransactionHistory:             "IncompleteTransactionHistory",
	TransactionTooOld:                        "TransactionTooOld",
	WriteConflict:                            "WriteConflict",
	ConflictingOperationInProgress:           "ConflictingOperationInProgress",
	TransactionCommitted:                     "TransactionCommitted",
	OperationNotSupportedInTransaction:       "OperationNotSupportedInTransaction",
	TransactionExceededLifetimeLimit:         "TransactionExceededLifetimeLimit",
	UnknownReplWriteConcern:                  "UnknownReplWriteConcern",
	AlreadyInitialized:                       "AlreadyInitialized",
	NoReplicationEnabled:                     "NoReplicationEnabled",
	CommandNotSupported:                      "CommandNotSupported",
	ExceededTimeLimit:                        "ExceededTimeLimit",
}

// Name returns MongoDB's codeName for c.
func (c Code) Name() string {
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("Location%d", int32(c))
}

// Error is a command failure with a MongoDB code; the wire layer turns it
// into {ok: 0, errmsg, code, codeName}.
type Error struct {
	Code Code
	Msg  string
	// Labels become the reply's errorLabels.
	Labels []string
}

func (e *Error) Error() string { return e.Msg }

// New returns an *Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code carried by err, or InternalError.
func CodeOf(err error) Code {
	var me *Error
	if errors.As(err, &me) {
		return me.Code
	}
	return InternalError
}
