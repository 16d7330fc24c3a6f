package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"

	"github.com/gorilla/mux"
)

// maxMgmtBody bounds the JSON bodies of /mgmt routes.
const maxMgmtBody = 64 << 10

// forwardedHeader marks a request forwarded to the leader, so that it is
// forwarded at most once.
const forwardedHeader = "Raftq-Forwarded"

// decodeJSON reads a small JSON body strictly: unknown fields, trailing
// data and wrong types are a 400.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxMgmtBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: malformed JSON body: %v", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: malformed JSON body: data after the object", ErrInvalid)
	}
	return nil
}

// nodeID parses the {id} of a path: a positive integer.
func nodeID(r *http.Request) (uint64, error) {
	s := mux.Vars(r)["id"]
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: node id %q must be a positive integer", ErrInvalid, s)
	}
	return id, nil
}

func (a *api) addNode(w http.ResponseWriter, r *http.Request) {
	var spec NodeSpec
	if err := decodeJSON(w, r, &spec); err != nil {
		a.fail(w, err)
		return
	}
	if spec.ID == 0 {
		a.fail(w, fmt.Errorf("%w: \"id\" must be a positive integer", ErrInvalid))
		return
	}
	if u, err := url.Parse(spec.PeerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		a.fail(w, fmt.Errorf("%w: \"peer_url\" must look like http://host:port", ErrInvalid))
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	n, err := a.c.AddNode(ctx, spec)
	if err != nil {
		a.failWrite(w, err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/mgmt/nodes/%d", n.ID))
	writeJSON(w, http.StatusCreated, n)
}

func (a *api) removeNode(w http.ResponseWriter, r *http.Request) {
	a.nodeChange(w, r, func(ctx context.Context, id uint64) (any, error) { return a.c.RemoveNode(ctx, id) })
}

func (a *api) promoteNode(w http.ResponseWriter, r *http.Request) {
	a.nodeChange(w, r, func(ctx context.Context, id uint64) (any, error) { return a.c.PromoteNode(ctx, id) })
}

// nodeChange runs a change on the member of the path's {id}. A change only
// the leader can make is forwarded to it, once.
func (a *api) nodeChange(w http.ResponseWriter, r *http.Request, change func(context.Context, uint64) (any, error)) {
	id, err := nodeID(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	out, err := change(ctx, id)
	var elsewhere *LeaderElsewhereError
	if errors.As(err, &elsewhere) && r.Header.Get(forwardedHeader) == "" {
		a.forward(w, r, elsewhere.URL)
		return
	}
	if err != nil {
		a.failWrite(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// forward relays the request to the leader's API and its answer back.
func (a *api) forward(w http.ResponseWriter, r *http.Request, to string) {
	target, err := url.Parse(to)
	if err != nil || target.Host == "" {
		a.fail(w, fmt.Errorf("%w: the leader's API URL %q is unusable", ErrUnavailable, to))
		return
	}
	p := httputil.NewSingleHostReverseProxy(target)
	p.Transport = a.opts.Forward
	p.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		a.failWrite(w, fmt.Errorf("%w: forwarding to the leader at %s: %v", ErrUnavailable, to, err))
	}
	r.Header.Set(forwardedHeader, "1")
	p.ServeHTTP(w, r)
}

func (a *api) transferLeader(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID uint64 `json:"id"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		a.fail(w, err)
		return
	}
	if body.ID == 0 {
		a.fail(w, fmt.Errorf("%w: \"id\" must be a positive integer", ErrInvalid))
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	ns, err := a.c.TransferLeader(ctx, body.ID)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ns)
}
