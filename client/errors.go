package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Errors an *Error wraps, by what raftq answered; branch on them with
// errors.Is.
var (
	ErrInvalid      = errors.New("raftq: invalid request")        // 400
	ErrUnauthorized = errors.New("raftq: unauthorized")           // 401: no token, or an unknown one
	ErrForbidden    = errors.New("raftq: forbidden")              // 403: the token lacks the role
	ErrNotFound     = errors.New("raftq: not found")              // 404: no such queue, message or member
	ErrConflict     = errors.New("raftq: conflict")               // 409
	ErrTooLarge     = errors.New("raftq: message too large")      // 413
	ErrKeyReused    = errors.New("raftq: idempotency key reused") // 422: the key came with another message
	ErrQueueFull    = errors.New("raftq: queue full")             // 429 naming a queue limit
	ErrOverloaded   = errors.New("raftq: overloaded")             // 429 of backpressure or too many waiters
	ErrUnavailable  = errors.New("raftq: unavailable")            // 503: no quorum, no leader, a deadline
	ErrStorageFull  = errors.New("raftq: insufficient storage")   // 507: a cluster limit or a disk alarm
	ErrServer       = errors.New("raftq: server error")           // any other status
	// ErrLeaseLost: the lease token no longer holds the message (409 on
	// an ack, release or extend): its lease expired, and it may have been
	// leased again since.
	ErrLeaseLost = ErrConflict
)

// Error is raftq's refusal of a call: its status, message, and for a
// failed write its outcome ("not_applied": it never happened; "unknown":
// it may still happen); Limit and Queue name the limit that refused a
// write.
type Error struct {
	Status   int
	Message  string
	Outcome  string
	Limit    string
	Queue    string
	Endpoint string // the node that answered
	// AfterUnknown: an earlier attempt of this call failed with an unknown
	// outcome, so this answer may describe the state that attempt made
	// (a 404 to an ack whose first attempt acked it).
	AfterUnknown bool
	sentinel     error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("raftq %d: %s", e.Status, e.Message)
	if e.Outcome != "" {
		s += " (outcome " + e.Outcome + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.sentinel }

// apiError reads raftq's JSON error answer.
func apiError(status int, body []byte, endpoint string) *Error {
	var j struct {
		Error   string `json:"error"`
		Outcome string `json:"outcome"`
		Limit   string `json:"limit"`
		Queue   string `json:"queue"`
	}
	if json.Unmarshal(body, &j) != nil || j.Error == "" {
		j.Error = http.StatusText(status)
	}
	e := &Error{Status: status, Message: j.Error, Outcome: j.Outcome, Limit: j.Limit, Queue: j.Queue, Endpoint: endpoint}
	switch status {
	case http.StatusBadRequest:
		e.sentinel = ErrInvalid
	case http.StatusUnauthorized:
		e.sentinel = ErrUnauthorized
	case http.StatusForbidden:
		e.sentinel = ErrForbidden
	case http.StatusNotFound:
		e.sentinel = ErrNotFound
	case http.StatusConflict:
		e.sentinel = ErrConflict
	case http.StatusRequestEntityTooLarge:
		e.sentinel = ErrTooLarge
	case http.StatusUnprocessableEntity:
		e.sentinel = ErrKeyReused
	case http.StatusTooManyRequests:
		e.sentinel = ErrOverloaded
		if j.Limit != "" {
			e.sentinel = ErrQueueFull
		}
	case http.StatusServiceUnavailable:
		e.sentinel = ErrUnavailable
	case http.StatusInsufficientStorage:
		e.sentinel = ErrStorageFull
	default:
		e.sentinel = ErrServer
	}
	return e
}
