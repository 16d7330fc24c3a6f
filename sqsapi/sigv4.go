package sqsapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftq/raftq/httpapi"
)

// Credentials are the access keys SQS clients sign requests with, when
// raftq's tokens are on: an access key id names a token, and the token is
// its secret access key (see the README). With Credentials set, every
// request must carry a valid AWS Signature Version 4 in its Authorization
// header, made with a known key that holds the action's role.
type Credentials interface {
	// Secret returns the secret of access key id and the roles it holds;
	// ok is false when the key is not known.
	Secret(accessKeyID string) (secret string, roles []httpapi.Role, ok bool)
}

// MaxClockSkew is how far a signed request's X-Amz-Date may be from this
// node's clock, as AWS allows.
const MaxClockSkew = 15 * time.Minute

// actionRoles are the role each action needs, as raftq's API routes need
// them: sends are a producer's, receives and their settlement a
// consumer's, what changes a queue an admin's; the rest any valid key's.
var actionRoles = map[string]httpapi.Role{
	"SendMessage": httpapi.RoleProducer, "SendMessageBatch": httpapi.RoleProducer,
	"ReceiveMessage": httpapi.RoleConsumer, "DeleteMessage": httpapi.RoleConsumer, "DeleteMessageBatch": httpapi.RoleConsumer,
	"ChangeMessageVisibility": httpapi.RoleConsumer, "ChangeMessageVisibilityBatch": httpapi.RoleConsumer,
	"CreateQueue": httpapi.RoleAdmin, "DeleteQueue": httpapi.RoleAdmin, "PurgeQueue": httpapi.RoleAdmin, "SetQueueAttributes": httpapi.RoleAdmin,
}

func errAuth(code, msg string) *Error {
	return &Error{Code: code, QueryCode: code, Message: msg, Status: http.StatusForbidden}
}

// authorize checks r's signature over body, and that its key holds the
// role action needs.
func (s *server) authorize(r *http.Request, body []byte, action string, now time.Time) error {
	if s.opts.Credentials == nil {
		return nil
	}
	sig, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	secret, roles, ok := s.opts.Credentials.Secret(sig.accessKey)
	if !ok {
		return errAuth("InvalidClientTokenId", "the access key id is not one of raftq's (see --auth-token-file)")
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || !strings.HasPrefix(sig.scope, at.Format("20060102")+"/") {
		return errAuth("IncompleteSignature", "X-Amz-Date is missing, malformed, or not the credential scope's day")
	}
	if d := now.Sub(at); d > MaxClockSkew || d < -MaxClockSkew {
		return errAuth("RequestExpired", fmt.Sprintf("the request was signed at %s, more than %s from this node's clock", at.Format(time.RFC3339), MaxClockSkew))
	}
	want := signature(secret, sig, stringToSign(r, body, sig))
	if !hmac.Equal([]byte(want), []byte(sig.signature)) {
		return errAuth("SignatureDoesNotMatch", "the request signature we calculated does not match the signature you provided; check your secret access key (the token)")
	}
	if role := actionRoles[action]; role != httpapi.RoleAny && !slices.Contains(roles, role) {
		return errAuth("AccessDenied", fmt.Sprintf("the access key's token does not hold the %s role that %s needs", role, action))
	}
	return nil
}

// sigV4 is a parsed Authorization header.
type sigV4 struct {
	accessKey, scope, signature string // scope: date/region/service/aws4_request
	signed                      []string
}

func parseAuthorization(h string) (sigV4, error) {
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return sigV4{}, errAuth("MissingAuthenticationToken", "the request must be signed with AWS Signature Version 4 (Authorization: AWS4-HMAC-SHA256 …)")
	}
	var sig sigV4
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			sig.accessKey, sig.scope, _ = strings.Cut(v, "/")
		case "SignedHeaders":
			sig.signed = strings.Split(v, ";")
		case "Signature":
			sig.signature = v
		}
	}
	if sig.accessKey == "" || strings.Count(sig.scope, "/") != 3 || !strings.HasSuffix(sig.scope, "/aws4_request") ||
		len(sig.signed) == 0 || !slices.Contains(sig.signed, "host") || sig.signature == "" {
		return sigV4{}, errAuth("IncompleteSignature", "the Authorization header needs Credential, SignedHeaders (with host) and Signature")
	}
	return sig, nil
}

// stringToSign is SigV4's string to sign for r: the canonical request's
// hash, under the date and scope.
func stringToSign(r *http.Request, body []byte, sig sigV4) string {
	var c strings.Builder
	c.WriteString(r.Method + "\n")
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	c.WriteString(path + "\n")
	c.WriteString(canonicalQuery(r.URL.Query()) + "\n")
	for _, name := range sig.signed {
		v := strings.Join(r.Header.Values(name), ",")
		switch {
		case name == "host":
			v = r.Host // net/http moves it out of the header
		case name == "content-length" && v == "" && r.ContentLength >= 0:
			v = strconv.FormatInt(r.ContentLength, 10)
		}
		c.WriteString(name + ":" + strings.Join(strings.Fields(v), " ") + "\n")
	}
	c.WriteString("\n" + strings.Join(sig.signed, ";") + "\n")
	sum := sha256.Sum256(body)
	c.WriteString(hex.EncodeToString(sum[:]))
	req := sha256.Sum256([]byte(c.String()))
	return "AWS4-HMAC-SHA256\n" + r.Header.Get("X-Amz-Date") + "\n" + sig.scope + "\n" + hex.EncodeToString(req[:])
}

// canonicalQuery is the query string sorted by name, then value, each
// escaped as SigV4 escapes (RFC 3986's unreserved characters kept).
func canonicalQuery(q url.Values) string {
	var pairs []string
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, sigEscape(k)+"="+sigEscape(v))
		}
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "&")
}

func sigEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// signature is the hex HMAC of toSign under the key derived from secret
// and the scope's date, region and service.
func signature(secret string, sig sigV4, toSign string) string {
	key := []byte("AWS4" + secret)
	for _, part := range strings.Split(sig.scope, "/") {
		key = hmacSHA256(key, part)
	}
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}
