// Package keyservice is the protocol between nodes and the control plane:
// the layer that translates a node's key requests into calls on its
// project's CMK. The server runs in the control plane behind mutually
// authenticated TLS and takes a node's identity from its client certificate
// only; the client is a kms.Provider for the node, plus the directive
// long-poll and the node's reports.
//
// Routes (JSON over HTTPS):
//
//	POST /v1/wrap        {plaintext, aad}          → kms.Wrapped
//	POST /v1/unwrap      {wrapped, aad}            → {plaintext}
//	GET  /v1/directive?after=N&wait=25s            → cpproto.Directive
//	POST /v1/report      cpproto.NodeReport        → 204
//
// A refusal carries the KMS reason: {"reason": "KEY_DISABLED", "detail": …}
// with status 422, so the node classifies it exactly as it would the KMS's
// own answer.
package keyservice

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/cmkdb/cmkdb/internal/cpproto"
	"github.com/cmkdb/cmkdb/internal/kms"
)

const maxBody = 1 << 20

type wrapRequest struct {
	Plaintext []byte `json:"plaintext"`
	AAD       []byte `json:"aad"`
}

type unwrapRequest struct {
	Wrapped kms.Wrapped `json:"wrapped"`
	AAD     []byte      `json:"aad"`
}

type unwrapResponse struct {
	Plaintext []byte `json:"plaintext"`
}

type errorBody struct {
	Reason kms.Reason `json:"reason"`
	Detail string     `json:"detail"`
	// Decrypt marks kms.ErrDecrypt: the key answered, the ciphertext or
	// associated data is wrong.
	Decrypt bool `json:"decrypt,omitempty"`
}

// Keys is what the key service needs of the control plane: a node's key
// operations and directives, by the node's verified identity. The control
// plane's *Service implements it; declaring it here keeps the control
// plane (and every cloud SDK it links) out of a node's import graph.
type Keys interface {
	NodeWrap(ctx context.Context, id cpproto.NodeID, plaintext, aad []byte) (kms.Wrapped, error)
	NodeUnwrap(ctx context.Context, id cpproto.NodeID, w kms.Wrapped, aad []byte) ([]byte, error)
	// NodeDirective returns the node's directive once its Gen exceeds
	// after, or the current one when ctx ends.
	NodeDirective(ctx context.Context, id cpproto.NodeID, after uint64) (cpproto.Directive, error)
	NodeReport(id cpproto.NodeID, r cpproto.NodeReport) error
}

// NewServer returns the key service's handler. Serve it only behind TLS
// that requires and verifies client certificates issued by the control
// plane's CA.
func NewServer(svc Keys, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	s := &server{svc: svc, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/wrap", s.node(s.wrap))
	mux.HandleFunc("POST /v1/unwrap", s.node(s.unwrap))
	mux.HandleFunc("GET /v1/directive", s.node(s.directive))
	mux.HandleFunc("POST /v1/report", s.node(s.report))
	return mux
}

type server struct {
	svc Keys
	log *slog.Logger
}

// node authenticates the caller by its verified client certificate.
func (s *server) node(h func(http.ResponseWriter, *http.Request, cpproto.NodeID)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "a client certificate is required", http.StatusUnauthorized)
			return
		}
		id, ok := cpproto.ParseNodeID(r.TLS.VerifiedChains[0][0].Subject.CommonName)
		if !ok {
			http.Error(w, "the client certificate does not name a node", http.StatusForbidden)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r, id)
	}
}

func (s *server) wrap(w http.ResponseWriter, r *http.Request, id cpproto.NodeID) {
	var req wrapRequest
	if !decode(w, r, &req) {
		return
	}
	defer clear(req.Plaintext)
	wr, err := s.svc.NodeWrap(r.Context(), id, req.Plaintext, req.AAD)
	if err != nil {
		s.fail(w, id, "wrap", err)
		return
	}
	writeJSON(w, http.StatusOK, wr)
}

func (s *server) unwrap(w http.ResponseWriter, r *http.Request, id cpproto.NodeID) {
	var req unwrapRequest
	if !decode(w, r, &req) {
		return
	}
	key, err := s.svc.NodeUnwrap(r.Context(), id, req.Wrapped, req.AAD)
	if err != nil {
		s.fail(w, id, "unwrap", err)
		return
	}
	writeJSON(w, http.StatusOK, unwrapResponse{Plaintext: key})
	clear(key)
}

func (s *server) directive(w http.ResponseWriter, r *http.Request, id cpproto.NodeID) {
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	wait = min(max(wait, 0), time.Minute)
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	d, err := s.svc.NodeDirective(ctx, id, after)
	if err != nil {
		s.fail(w, id, "directive", err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *server) report(w http.ResponseWriter, r *http.Request, id cpproto.NodeID) {
	var rep cpproto.NodeReport
	if !decode(w, r, &rep) {
		return
	}
	if err := s.svc.NodeReport(id, rep); err != nil {
		s.fail(w, id, "report", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) fail(w http.ResponseWriter, id cpproto.NodeID, op string, err error) {
	if errors.Is(err, cpproto.ErrUnknownCluster) {
		writeJSON(w, http.StatusNotFound, errorBody{Reason: kms.ReasonKeyNotFound, Detail: "the node's cluster does not exist"})
		return
	}
	reason := kms.ReasonOf(err)
	if reason == "" {
		reason = kms.ReasonServerError
	}
	s.log.Warn("key service refused a node", "node", id.String(), "op", op, "reason", reason)
	writeJSON(w, http.StatusUnprocessableEntity, errorBody{Reason: reason, Detail: err.Error(), Decrypt: errors.Is(err, kms.ErrDecrypt)})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	clear(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Reason: kms.ReasonKeyMalformed, Detail: "malformed request"})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	js, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(js)
	clear(js)
}
