// Package input reads what the offline commands decide on: manifests (files,
// directories, URLs and stdin, through cli-runtime's resource.Builder, as
// kubectl reads -f) and the cluster state, from such manifests or from an
// API server.
package input

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/resource"
)

// MaxInputSize bounds stdin and every file named on the command line:
// decoding YAML costs many times its size in memory.
const MaxInputSize = 64 << 20

// Stdin is the name "-" reads from, in locations and errors.
const Stdin = "stdin"

// Location says where in the input an object or an error is.
type Location struct {
	// File is the file, URL or "stdin" the object came from.
	File string
	// Doc is the 1-based index among the file's non-empty documents (one
	// holding nothing but comments is not counted); 0 for the whole file.
	Doc int
	// Item is the 1-based index in the items of a List document; 0 when
	// the document is the object itself.
	Item int
}

// String renders "FILE: document N: item M", leaving out unknown parts.
func (l Location) String() string {
	var parts []string
	if l.File != "" {
		parts = append(parts, l.File)
	}
	if l.Doc > 0 {
		parts = append(parts, fmt.Sprintf("document %d", l.Doc))
	}
	if l.Item > 0 {
		parts = append(parts, fmt.Sprintf("item %d", l.Item))
	}
	return strings.Join(parts, ": ")
}

// Error is an input that cannot be used, with where it is.
type Error struct {
	Loc Location
	Err error
}

// Error renders "FILE: document N: what is wrong".
func (e *Error) Error() string {
	if where := e.Loc.String(); where != "" {
		return where + ": " + e.Err.Error()
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Object is one Kubernetes object read from a manifest.
type Object struct {
	Loc Location
	*unstructured.Unstructured
}

// Read reads the objects of manifests in order, as kubectl reads -f: files,
// directories (their .json, .yaml and .yml files; with recursive, their
// subdirectories too), http(s) URLs, and "-" for stdin. List documents are
// expanded into their items. Every object must have an apiVersion and a
// kind; which kind is the caller's concern. Errors are *Error naming the
// file and the document where there is one.
func Read(names []string, recursive bool, stdin io.Reader) ([]Object, error) {
	t := &tracker{}
	b := resource.NewLocalBuilder().Unstructured().Schema(t)
	var limited *limitReader
	for _, name := range names {
		switch {
		case name == "-":
			if stdin == nil {
				return nil, &Error{Loc: Location{File: Stdin}, Err: errors.New("no standard input")}
			}
			limited = &limitReader{r: stdin, n: MaxInputSize}
			b.Stream(limited, Stdin)
		default:
			if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxInputSize {
				return nil, &Error{Loc: Location{File: name}, Err: errTooLarge}
			}
			b.FilenameParam(false, &resource.FilenameOptions{Filenames: []string{name}, Recursive: recursive})
		}
	}
	var objs []Object
	err := b.Do().Visit(func(info *resource.Info, err error) error {
		if err != nil {
			return err
		}
		loc := t.next(info.Source)
		switch o := info.Object.(type) {
		case *unstructured.Unstructured:
			objs = append(objs, Object{Loc: loc, Unstructured: o})
		case *unstructured.UnstructuredList:
			for i := range o.Items {
				loc.Item = i + 1
				objs = append(objs, Object{Loc: loc, Unstructured: &o.Items[i]})
			}
		default:
			return &Error{Loc: loc, Err: fmt.Errorf("unexpected object %T", info.Object)}
		}
		return nil
	})
	if err != nil {
		if limited != nil && limited.exceeded {
			return nil, &Error{Loc: Location{File: Stdin}, Err: errTooLarge}
		}
		return nil, t.locate(err)
	}
	return objs, nil
}

var errTooLarge = fmt.Errorf("input is larger than the limit of %d MiB", MaxInputSize>>20)

// limitReader fails once more than n bytes are read.
type limitReader struct {
	r        io.Reader
	n        int64
	exceeded bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	if l.n -= int64(n); l.n < 0 {
		l.exceeded = true
		return n, errTooLarge
	}
	return n, err
}

// tracker numbers the documents of each source as the builder visits them
// and checks each document's header before the builder decodes it (it is
// the builder's ContentValidator), so that an error names the document
// and says what is wrong in the words a user of kubectl knows. Without
// Flatten, every document yields exactly one object or one error, and
// the builder visits sources one after the other.
type tracker struct {
	source string
	docs   int    // documents of source visited so far
	bad    *Error // what ValidateBytes last found wrong
}

// next returns the location of the next document of source.
func (t *tracker) next(source string) Location {
	if source != t.source {
		t.source, t.docs = source, 0
	}
	t.docs++
	return Location{File: source, Doc: t.docs}
}

// ValidateBytes implements resource.ContentValidator: it checks the header
// of one document, and of the items of a List.
func (t *tracker) ValidateBytes(data []byte) error {
	t.bad = nil
	if err := checkDocument(data); err != nil {
		t.bad = err
		return err
	}
	return nil
}

// locate turns an error of the builder into an *Error naming the source
// and the document.
func (t *tracker) locate(err error) error {
	msg := err.Error()
	if src, ok := quotedSource(msg, "error validating "); ok && t.bad != nil {
		e := *t.bad
		e.Loc.File, e.Loc.Doc = src, t.next(src).Doc
		return &e
	}
	if src, rest, ok := cutSource(msg, "error parsing "); ok {
		return &Error{Loc: t.next(src), Err: errors.New(rest)}
	}
	if src, ok := quotedSource(msg, "unable to decode "); ok {
		_, rest, _ := strings.Cut(strings.TrimPrefix(msg, "unable to decode "+strconv.Quote(src)), ": ")
		return &Error{Loc: t.next(src), Err: errors.New(rest)}
	}
	return err
}

// quotedSource reads the quoted source after prefix in a message.
func quotedSource(msg, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		return "", false
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", false
	}
	src, err := strconv.Unquote(q)
	return src, err == nil
}

// cutSource splits "PREFIX SOURCE: message".
func cutSource(msg, prefix string) (src, rest string, ok bool) {
	rest, ok = strings.CutPrefix(msg, prefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ": ")
}

// checkDocument checks that one document is a Kubernetes object with an
// apiVersion and a kind, and so are the items of a List.
func checkDocument(js []byte) *Error {
	fields, gvk, err := header(js, schema.GroupVersionKind{})
	if err != nil {
		return &Error{Err: err}
	}
	rawItems, hasItems := fields["items"]
	if !hasItems {
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(rawItems, &items); err != nil {
		return &Error{Err: fmt.Errorf("%s: items is not a list of objects", gvkString(gvk))}
	}
	// A typed list (PodList) read from the API leaves out its items'
	// apiVersion and kind; kubectl's kind List never does.
	var itemDefault schema.GroupVersionKind
	if gvk.Kind != "List" {
		itemDefault = gvk.GroupVersion().WithKind(strings.TrimSuffix(gvk.Kind, "List"))
	}
	for i, item := range items {
		if s := strings.TrimSpace(string(item)); s == "null" {
			return &Error{Loc: Location{Item: i + 1}, Err: errors.New("not a Kubernetes object: the item is empty")}
		}
		if _, _, err := header(item, itemDefault); err != nil {
			return &Error{Loc: Location{Item: i + 1}, Err: err}
		}
	}
	return nil
}

// header reads apiVersion and kind. When the object has neither, def is
// used if it has a kind.
func header(js []byte, def schema.GroupVersionKind) (map[string]json.RawMessage, schema.GroupVersionKind, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(js, &fields); err != nil || fields == nil {
		return nil, schema.GroupVersionKind{}, fmt.Errorf("not a Kubernetes object: got %s, want a mapping with apiVersion and kind", jsonType(js))
	}
	_, hasVersion := fields["apiVersion"]
	_, hasKind := fields["kind"]
	if !hasVersion && !hasKind && def.Kind != "" {
		return fields, def, nil
	}
	apiVersion, err := stringField(fields, "apiVersion")
	if err != nil {
		return nil, schema.GroupVersionKind{}, err
	}
	kind, err := stringField(fields, "kind")
	if err != nil {
		return nil, schema.GroupVersionKind{}, err
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil || gv.Version == "" { // "group/" parses, without a version
		return nil, schema.GroupVersionKind{}, fmt.Errorf("not a Kubernetes object: invalid apiVersion %q", apiVersion)
	}
	return fields, gv.WithKind(kind), nil
}

func stringField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", fmt.Errorf("not a Kubernetes object: %s is missing", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || jsonType(raw) == "null" {
		return "", fmt.Errorf("not a Kubernetes object: %s is %s, want a string", name, jsonType(raw))
	}
	if s == "" {
		return "", fmt.Errorf("not a Kubernetes object: %s is empty", name)
	}
	return s, nil
}

// jsonType names the type of a JSON value for error messages.
func jsonType(js []byte) string {
	js = []byte(strings.TrimSpace(string(js)))
	if len(js) == 0 {
		return "nothing"
	}
	switch js[0] {
	case '{':
		return "a mapping"
	case '[':
		return "a sequence"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// gvkString renders "apps/v1 Deployment", as apiVersion and kind read.
func gvkString(gvk schema.GroupVersionKind) string {
	return gvk.GroupVersion().String() + " " + gvk.Kind
}
