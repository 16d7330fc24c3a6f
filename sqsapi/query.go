package sqsapi

import (
	"crypto/rand"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The query protocol: form-encoded parameters (Action=SendMessage&…, in a
// POST body or a GET's query), XML answers. Its parameters are turned into
// the JSON protocol's input and its outputs into XML, so both protocols
// run the same actions.

const queryNamespace = "http://queue.amazonaws.com/doc/2012-11-05/"

// queryLists are the query protocol's flattened lists and maps, by their
// member name, with the JSON input field each becomes.
var queryLists = map[string]string{
	"AttributeName":                            "AttributeNames",
	"MessageAttributeName":                     "MessageAttributeNames",
	"MessageSystemAttributeName":               "MessageSystemAttributeNames",
	"Attribute":                                "Attributes",        // a map: .N.Name, .N.Value
	"MessageAttribute":                         "MessageAttributes", // a map: .N.Name, .N.Value.*
	"MessageSystemAttribute":                   "MessageSystemAttributes",
	"SendMessageBatchRequestEntry":             "Entries",
	"DeleteMessageBatchRequestEntry":           "Entries",
	"ChangeMessageVisibilityBatchRequestEntry": "Entries",
}

// queryInts are the parameters that are numbers in the JSON input.
var queryInts = map[string]bool{"MaxNumberOfMessages": true, "VisibilityTimeout": true, "WaitTimeSeconds": true,
	"DelaySeconds": true, "MaxResults": true}

// queryInput turns query parameters into the JSON protocol's input.
func queryInput(form url.Values) ([]byte, error) {
	root := map[string]any{}
	for key, vals := range form {
		switch key {
		case "Action", "Version", "AWSAccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "Timestamp", "Expires":
			continue
		}
		if err := setPath(root, strings.Split(key, "."), vals[0]); err != nil {
			return nil, err
		}
	}
	v, err := shape(root)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// setPath files value under the dotted path parts in a tree of maps.
func setPath(node map[string]any, parts []string, value string) error {
	for _, p := range parts[:len(parts)-1] {
		next, ok := node[p].(map[string]any)
		if !ok {
			if _, taken := node[p]; taken {
				return errInvalidParameter(fmt.Sprintf("parameter %s is both a value and a structure", strings.Join(parts, ".")))
			}
			next = map[string]any{}
			node[p] = next
		}
		node = next
	}
	last := parts[len(parts)-1]
	if _, taken := node[last]; taken {
		return errInvalidParameter(fmt.Sprintf("parameter %s is both a value and a structure", strings.Join(parts, ".")))
	}
	node[last] = value
	return nil
}

// shape turns a tree of form parameters into the JSON input: flattened
// lists into arrays (by index), maps into objects, numbers into numbers.
func shape(node map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for k, v := range node {
		field, isList := queryLists[k]
		sub, isNode := v.(map[string]any)
		switch {
		case isList && isNode:
			items, err := members(k, sub)
			if err != nil {
				return nil, err
			}
			out[field], err = listValue(field, items)
			if err != nil {
				return nil, err
			}
		case isNode:
			s, err := shape(sub)
			if err != nil {
				return nil, err
			}
			out[k] = s
		case queryInts[k]:
			n, err := strconv.Atoi(v.(string))
			if err != nil {
				return nil, errInvalidParameter(fmt.Sprintf("%s=%q is not a number", k, v))
			}
			out[k] = n
		default:
			out[k] = v
		}
	}
	return out, nil
}

// members returns a flattened list's members in index order (1, 2, …).
func members(name string, node map[string]any) ([]any, error) {
	idx := make([]int, 0, len(node))
	byIdx := map[int]any{}
	for k, v := range node {
		i, err := strconv.Atoi(k)
		if err != nil || i < 1 {
			return nil, errInvalidParameter(fmt.Sprintf("parameter %s.%s: members are numbered from 1", name, k))
		}
		idx = append(idx, i)
		byIdx[i] = v
	}
	sort.Ints(idx)
	out := make([]any, len(idx))
	for j, i := range idx {
		out[j] = byIdx[i]
	}
	return out, nil
}

// listValue is a flattened list's JSON value: an array of strings, of
// shaped entries, or a map for Attributes and MessageAttributes.
func listValue(field string, items []any) (any, error) {
	switch field {
	case "Attributes", "MessageAttributes", "MessageSystemAttributes":
		m := map[string]any{}
		for _, it := range items {
			e, ok := it.(map[string]any)
			name, _ := e["Name"].(string)
			if !ok || name == "" {
				return nil, errInvalidParameter(field + ": each member has a Name and a Value")
			}
			if v, ok := e["Value"].(map[string]any); ok {
				s, err := shape(v)
				if err != nil {
					return nil, err
				}
				m[name] = s
			} else {
				m[name] = e["Value"]
			}
		}
		return m, nil
	case "Entries":
		out := make([]any, len(items))
		for i, it := range items {
			e, ok := it.(map[string]any)
			if !ok {
				return nil, errInvalidParameter("a batch entry is a structure")
			}
			s, err := shape(e)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	return items, nil
}

// queryForm is a query request's parameters: its URL's, then its body's.
func queryForm(r *http.Request, body []byte) (url.Values, error) {
	form := r.URL.Query()
	if r.Method == http.MethodPost {
		b, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		for k, v := range b {
			form[k] = append(form[k], v...)
		}
	}
	return form, nil
}

// serveQuery runs action act of a query protocol request with its form.
func (s *server) serveQuery(w http.ResponseWriter, r *http.Request, name string, act action, form url.Values) {
	if form.Get("QueueUrl") == "" && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 1 {
		form.Set("QueueUrl", s.queueURL(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:])) // posted to the queue's URL
	}
	in, err := queryInput(form)
	if err != nil {
		writeQueryError(w, s.sqsError(name, err))
		return
	}
	ctx, cancel := s.actionContext(r)
	defer cancel()
	out, err := act(s, ctx, in)
	if err != nil {
		writeQueryError(w, s.sqsError(name, err))
		return
	}
	b, err := json.Marshal(out)
	var result map[string]any
	if err == nil {
		err = json.Unmarshal(b, &result)
	}
	if err != nil {
		writeQueryError(w, s.sqsError(name, err))
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, queryResponse(name, result))
}

// queryResponse is an action's output in the query protocol's XML.
func queryResponse(action string, result map[string]any) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?><%sResponse xmlns="%s">`, action, queryNamespace)
	if len(result) > 0 || action == "ReceiveMessage" || action == "ListQueues" || action == "GetQueueAttributes" {
		fmt.Fprintf(&b, "<%sResult>", action)
		writeFields(&b, action, result)
		fmt.Fprintf(&b, "</%sResult>", action)
	}
	fmt.Fprintf(&b, "<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>", requestID(), action)
	return b.String()
}

// writeFields writes an output structure's fields, sorted by name; lists
// and maps flattened as the query protocol has them.
func writeFields(b *strings.Builder, action string, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		writeField(b, action, k, m[k])
	}
}

func writeField(b *strings.Builder, action, k string, v any) {
	switch k {
	case "QueueUrls":
		for _, u := range v.([]any) {
			element(b, "QueueUrl", u)
		}
	case "Messages":
		for _, m := range v.([]any) {
			b.WriteString("<Message>")
			writeFields(b, action, m.(map[string]any))
			b.WriteString("</Message>")
		}
	case "Successful":
		for _, e := range v.([]any) {
			fmt.Fprintf(b, "<%sResultEntry>", action)
			writeFields(b, action, e.(map[string]any))
			fmt.Fprintf(b, "</%sResultEntry>", action)
		}
	case "Failed":
		for _, e := range v.([]any) {
			b.WriteString("<BatchResultErrorEntry>")
			writeFields(b, action, e.(map[string]any))
			b.WriteString("</BatchResultErrorEntry>")
		}
	case "Attributes", "MessageAttributes":
		member := strings.TrimSuffix(k, "s")
		attrs := v.(map[string]any)
		names := make([]string, 0, len(attrs))
		for n := range attrs {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(b, "<%s>", member)
			element(b, "Name", n)
			if sub, ok := attrs[n].(map[string]any); ok {
				b.WriteString("<Value>")
				writeFields(b, action, sub)
				b.WriteString("</Value>")
			} else {
				element(b, "Value", attrs[n])
			}
			fmt.Fprintf(b, "</%s>", member)
		}
	default:
		element(b, k, v)
	}
}

// element writes <name>v</name>, v escaped.
func element(b *strings.Builder, name string, v any) {
	fmt.Fprintf(b, "<%s>", name)
	xml.EscapeText(b, []byte(fmt.Sprint(v)))
	fmt.Fprintf(b, "</%s>", name)
}

// writeQueryError writes e in the query protocol's shape.
func writeQueryError(w http.ResponseWriter, e *Error) {
	fault, status := e.faultAndStatus()
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?><ErrorResponse xmlns="%s"><Error><Type>%s</Type>`, queryNamespace, fault)
	element(&b, "Code", e.QueryCode)
	element(&b, "Message", e.Message)
	fmt.Fprintf(&b, "<Detail/></Error><RequestId>%s</RequestId></ErrorResponse>", requestID())
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	io.WriteString(w, b.String())
}

// requestID is a fresh request id, shaped as AWS's (a UUID).
func requestID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}
