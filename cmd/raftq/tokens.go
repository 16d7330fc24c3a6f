package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"

	"github.com/raftq/raftq/httpapi"
)

// tokens are the bearer tokens of --auth-token-file: one per line, the
// token, a space, its roles separated by commas; "#" starts a comment.
// Only their SHA-256 digests are kept; a token is compared against every
// digest in constant time, and never logged. Reload replaces them all at
// once (SIGHUP).
type tokens struct {
	path string
	set  atomic.Pointer[[]tokenEntry]
}

type tokenEntry struct {
	digest [sha256.Size]byte
	roles  []httpapi.Role
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
		if len(fields) != 2 {
			return nil, fmt.Errorf("auth token file %s, line %d: want a token, a space and its roles (producer,consumer,admin)", path, n)
		}
		e := tokenEntry{digest: sha256.Sum256([]byte(fields[0]))}
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
