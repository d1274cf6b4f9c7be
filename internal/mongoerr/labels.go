package mongoerr

// Error labels drivers act on (the retryable writes and transactions
// specifications).
const (
	// RetryableWriteError marks a failed write a driver may retry once
	// (the server that refused it stepped down, or was not primary).
	RetryableWriteError = "RetryableWriteError"
	// TransientTransactionError marks a transaction a driver may rerun.
	TransientTransactionError = "TransientTransactionError"
)

// WithLabels returns a copy of e carrying labels.
func (e *Error) WithLabels(labels ...string) *Error {
	c := *e
	c.Labels = append(append([]string(nil), e.Labels...), labels...)
	return &c
}
