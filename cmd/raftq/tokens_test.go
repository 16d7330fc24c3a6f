package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/raftq/raftq/httpapi"
)

func writeTokens(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The token file: a token and its roles per line, comments and blank
// lines skipped; a bad line refuses the whole file, and a reload that
// fails keeps the tokens in use.
func TestTokens(t *testing.T) {
	p := writeTokens(t, "# tokens\nprod-1 producer\n\ncons-1 consumer # worker\nboss admin,producer,consumer\n")
	tk, err := loadTokens(p)
	if err != nil || tk.count() != 3 {
		t.Fatalf("load: %v, %d tokens", err, tk.count())
	}
	for _, c := range []struct {
		token string
		role  httpapi.Role
		want  error
	}{
		{"prod-1", httpapi.RoleProducer, nil},
		{"prod-1", httpapi.RoleConsumer, httpapi.ErrForbidden},
		{"prod-1", httpapi.RoleAny, nil},
		{"cons-1", httpapi.RoleConsumer, nil},
		{"cons-1", httpapi.RoleAdmin, httpapi.ErrForbidden},
		{"boss", httpapi.RoleAdmin, nil},
		{"boss", httpapi.RoleProducer, nil},
		{"", httpapi.RoleAny, httpapi.ErrUnauthorized},
		{"prod-2", httpapi.RoleAny, httpapi.ErrUnauthorized},
		{"prod-1 ", httpapi.RoleProducer, httpapi.ErrUnauthorized},
	} {
		err := tk.Authorize(c.token, c.role)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%q as %q: %v, want %v", c.token, c.role, err, c.want)
		}
	}
	for _, bad := range []string{"lonely\n", "t producer extra\n", "t root\n", "t producer,\n", "t producer\nt consumer\n"} {
		if _, err := readTokens(writeTokens(t, bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	os.WriteFile(p, []byte("t root\n"), 0o600)
	if err := tk.reload(); err == nil || tk.Authorize("boss", httpapi.RoleAdmin) != nil {
		t.Fatalf("a failed reload: %v; the old tokens must stay", err)
	}
	os.WriteFile(p, []byte("new admin\n"), 0o600)
	if err := tk.reload(); err != nil || tk.Authorize("new", httpapi.RoleAdmin) != nil || tk.Authorize("boss", httpapi.RoleAny) == nil {
		t.Fatalf("reload: %v", err)
	}
}

// A token may name the access key id SQS clients sign with; the token is
// then the key's secret. Ids are unique and of letters and digits.
func TestTokenAccessKeys(t *testing.T) {
	tk, err := loadTokens(writeTokens(t, "tok-p producer sqs=PRODUCERKEY\ntok-c consumer\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s, roles, ok := tk.Secret("PRODUCERKEY"); !ok || s != "tok-p" || len(roles) != 1 || roles[0] != httpapi.RoleProducer {
		t.Fatalf("PRODUCERKEY: %q %v %v", s, roles, ok)
	}
	if _, _, ok := tk.Secret(""); ok {
		t.Fatal("the empty key id names a token without one")
	}
	if err := tk.Authorize("tok-p", httpapi.RoleProducer); err != nil {
		t.Fatalf("the token as a bearer token: %v", err)
	}
	for _, bad := range []string{"a producer sqs=K\nb consumer sqs=K\n", "a producer sqs=\n", "a producer key=K\n", "a producer sqs=K-1\n", "a producer sqs=K x\n"} {
		if _, err := loadTokens(writeTokens(t, bad)); err == nil {
			t.Errorf("%q loaded", bad)
		}
	}
}
