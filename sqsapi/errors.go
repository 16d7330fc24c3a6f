package sqsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/raftq/raftq/httpapi"
)

// Error is an SQS error: its JSON protocol type (Code, as in
// com.amazonaws.sqs#<Code>), its query protocol code (QueryCode, which
// the JSON protocol also sends in x-amzn-query-error), whether the sender
// is at fault, and the HTTP status.
type Error struct {
	Code, QueryCode, Message string
	Status                   int  // 400 unless set
	Server                   bool // the fault is the server's
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errInvalidAction(msg string) *Error {
	return &Error{Code: "InvalidAction", QueryCode: "InvalidAction", Message: msg}
}

func errInvalidParameter(msg string) *Error {
	return &Error{Code: "InvalidParameterValue", QueryCode: "InvalidParameterValue", Message: msg}
}

func errMissingParameter(name string) *Error {
	return &Error{Code: "MissingParameter", QueryCode: "MissingParameter", Message: "the request must contain the parameter " + name}
}

func errNoQueue(name string) *Error {
	return &Error{Code: "QueueDoesNotExist", QueryCode: "AWS.SimpleQueueService.NonExistentQueue",
		Message: fmt.Sprintf("The specified queue %s does not exist.", name)}
}

func errBadHandle(msg string) *Error {
	return &Error{Code: "ReceiptHandleIsInvalid", QueryCode: "ReceiptHandleIsInvalid", Message: msg}
}

// sqsError maps a raftq failure to the nearest SQS error.
func (s *server) sqsError(action string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, httpapi.ErrNotFound):
		return &Error{Code: "QueueDoesNotExist", QueryCode: "AWS.SimpleQueueService.NonExistentQueue", Message: err.Error()}
	case errors.Is(err, httpapi.ErrInvalid):
		return errInvalidParameter(err.Error())
	case errors.Is(err, httpapi.ErrQueueFull), errors.Is(err, httpapi.ErrStorageFull), errors.Is(err, httpapi.ErrOverloaded),
		errors.Is(err, httpapi.ErrTooManyWaiters):
		return &Error{Code: "OverLimit", QueryCode: "OverLimit", Message: err.Error(), Status: http.StatusForbidden}
	case errors.Is(err, httpapi.ErrUnavailable):
		return &Error{Code: "ServiceUnavailable", QueryCode: "ServiceUnavailable", Message: err.Error(), Status: http.StatusServiceUnavailable, Server: true}
	}
	s.lg.Warn("sqs: unexpected error", zap.String("action", action), zap.Error(err))
	return &Error{Code: "InternalFailure", QueryCode: "InternalFailure", Message: err.Error(), Status: http.StatusInternalServerError, Server: true}
}

// writeError writes e in the JSON protocol's shape, with the query
// protocol's code in x-amzn-query-error for query-compatible clients.
func writeError(w http.ResponseWriter, e *Error) {
	fault, status := e.faultAndStatus()
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("x-amzn-query-error", e.QueryCode+";"+fault)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + e.Code, "message": e.Message})
}

// faultAndStatus are whose fault e is (Sender or Receiver) and its HTTP
// status (400 unless set).
func (e *Error) faultAndStatus() (string, int) {
	fault := "Sender"
	if e.Server {
		fault = "Receiver"
	}
	if e.Status == 0 {
		return fault, http.StatusBadRequest
	}
	return fault, e.Status
}
