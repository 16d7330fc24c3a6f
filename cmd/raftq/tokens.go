package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"

	"github.com/raftq/raftq/httpapi"
)

// tokens are the bearer tokens of --auth-token-file: one per line, the
// token, a space, its roles separated by commas, and optionally a space
// and sqs=ACCESS_KEY_ID, the access key id SQS clients sign with (the
// token is their secret access key); "#" starts a comment. Only the
// SHA-256 digests of tokens are kept, except the tokens with an access
// key id, which SigV4 needs as HMAC keys; a token is compared against
// every digest in constant time, and never logged. Reload replaces them
// all at once (SIGHUP).
type tokens struct {
	path string
	set  atomic.Pointer[[]tokenEntry]
}

type tokenEntry struct {
	digest [sha256.Size]byte
	roles  []httpapi.Role
	// accessKey and secret are set for a token SQS clients sign with.
	accessKey, secret string
}

func loadTokens(path string) (*tokens, error) {
	t := &tokens{path: path}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// reload reads the file again; on any error the tokens in use stay.
func (t *tokens) reload() error {
	set, err := readTokens(t.path)
	if err != nil {
		return err
	}
	t.set.Store(&set)
	return nil
}

func (t *tokens) count() int { return len(*t.set.Load()) }

func readTokens(path string) ([]tokenEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth token file: %w", err)
	}
	defer f.Close()
	var out []tokenEntry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 && len(fields) != 3 {
			return nil, fmt.Errorf("auth token file %s, line %d: want a token, a space and its roles (producer,consumer,admin), and optionally sqs=ACCESS_KEY_ID", path, n)
		}
		e := tokenEntry{digest: sha256.Sum256([]byte(fields[0]))}
		if len(fields) == 3 {
			id, ok := strings.CutPrefix(fields[2], "sqs=")
			if !ok || !accessKeyID.MatchString(id) {
				return nil, fmt.Errorf("auth token file %s, line %d: the third field is sqs=ACCESS_KEY_ID, 1 to 128 letters and digits", path, n)
			}
			if slices.ContainsFunc(out, func(o tokenEntry) bool { return o.accessKey == id }) {
				return nil, fmt.Errorf("auth token file %s, line %d: access key id %s listed twice", path, n, id)
			}
			e.accessKey, e.secret = id, fields[0]
		}
		for _, r := range strings.Split(fields[1], ",") {
			role := httpapi.Role(r)
			if role != httpapi.RoleProducer && role != httpapi.RoleConsumer && role != httpapi.RoleAdmin {
				return nil, fmt.Errorf("auth token file %s, line %d: unknown role %q (producer, consumer, admin)", path, n, r)
			}
			e.roles = append(e.roles, role)
		}
		if slices.ContainsFunc(out, func(o tokenEntry) bool { return o.digest == e.digest }) {
			return nil, fmt.Errorf("auth token file %s, line %d: a token listed twice", path, n)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth token file %s: %w", path, err)
	}
	return out, nil
}

// Authorize implements httpapi.Authorizer.
func (t *tokens) Authorize(token string, role httpapi.Role) error {
	if token == "" {
		return fmt.Errorf("%w: this route needs \"Authorization: Bearer <token>\"", httpapi.ErrUnauthorized)
	}
	d := sha256.Sum256([]byte(token))
	set := *t.set.Load()
	var found *tokenEntry
	for i := range set { // every digest, found or not
		if subtle.ConstantTimeCompare(d[:], set[i].digest[:]) == 1 {
			found = &set[i]
		}
	}
	switch {
	case found == nil:
		return fmt.Errorf("%w: the token is not valid", httpapi.ErrUnauthorized)
	case role != httpapi.RoleAny && !slices.Contains(found.roles, role):
		return fmt.Errorf("%w: the token does not hold the %s role", httpapi.ErrForbidden, role)
	}
	return nil
}

var accessKeyID = regexp.MustCompile(`^[A-Za-z0-9]{1,128}$`)

// Secret implements sqsapi.Credentials: the token an access key id names,
// and its roles.
func (t *tokens) Secret(accessKeyID string) (string, []httpapi.Role, bool) {
	for _, e := range *t.set.Load() {
		if e.accessKey != "" && e.accessKey == accessKeyID {
			return e.secret, e.roles, true
		}
	}
	return "", nil, false
}

// Roles implements httpapi.RoleLister: the roles token holds (none for an
// unknown token).
func (t *tokens) Roles(token string) []httpapi.Role {
	d := sha256.Sum256([]byte(token))
	var roles []httpapi.Role
	for _, e := range *t.set.Load() { // every digest, found or not
		if subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1 {
			roles = e.roles
		}
	}
	return roles
}

// reloadOnHUP rereads the token file at each SIGHUP until ctx ends; a
// file that does not parse leaves the tokens in use.
func reloadOnHUP(ctx context.Context, t *tokens, lg *zap.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := t.reload(); err != nil {
				lg.Error("SIGHUP: the auth token file does not parse; the tokens in use stay", zap.Error(err))
				continue
			}
			lg.Info("SIGHUP: auth tokens reloaded", zap.Int("tokens", t.count()))
		}
	}
}
