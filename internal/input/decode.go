// Package input reads what the offline commands decide on: cluster state and
// PeerAuthentications from YAML or JSON files (as kubectl prints and applies
// them), and cluster state from a live API server.
package input

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// MaxInputSize bounds one input file or stream. A document cannot be larger
// than its file, so it bounds every document too. Decoding YAML costs many
// times its size in memory, so an unbounded input could exhaust it.
const MaxInputSize = 64 << 20

// Location says where in the input an object or an error is.
type Location struct {
	// File is the name of the file as given, or "" when not known.
	File string
	// Doc is the 1-based index of the document among the file's non-empty
	// documents (a document holding nothing but comments is not counted);
	// 0 when the location is the whole file.
	Doc int
	// Item is the 1-based index in the items of a List document; 0 when
	// the document is the object itself.
	Item int
}

// String renders "FILE: document N: item M", leaving out the parts that
// are unknown.
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

// Object is one Kubernetes object read from an input, still undecoded.
type Object struct {
	Loc Location
	GVK schema.GroupVersionKind
	// JSON is the object as a JSON object, with apiVersion and kind set.
	JSON []byte
}

// ReadFile reads and splits a file; see Decode. Errors are *Error naming the
// file.
func ReadFile(path string) ([]Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{Loc: Location{File: path}, Err: pathError(err)}
	}
	defer f.Close()
	return DecodeNamed(path, f)
}

// DecodeNamed is Decode with every location and error naming the input.
func DecodeNamed(name string, r io.Reader) ([]Object, error) {
	objs, err := Decode(r)
	if err != nil {
		var ie *Error
		if errors.As(err, &ie) {
			ie.Loc.File = name
			return nil, ie
		}
		return nil, &Error{Loc: Location{File: name}, Err: err}
	}
	for i := range objs {
		objs[i].Loc.File = name
	}
	return objs, nil
}

// Decode splits a stream into Kubernetes objects. It accepts multi-document
// YAML, a stream of JSON objects, and List documents (kind List, as kubectl
// get prints, or a typed list such as PodList), whose items it returns one
// by one. Empty documents are skipped. Every object must have an apiVersion
// and a kind; what kind it is is the caller's concern. Errors are *Error
// naming the document; the stream is read to at most MaxInputSize bytes.
func Decode(r io.Reader) ([]Object, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInputSize+1))
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("reading: %w", pathError(err))}
	}
	if len(data) > MaxInputSize {
		return nil, &Error{Err: fmt.Errorf("input is larger than the limit of %d MiB", MaxInputSize>>20)}
	}
	if utilyaml.IsJSONBuffer(data) {
		objs, err := decodeJSON(data)
		var ie *Error
		if err == nil || !errors.As(err, &ie) || ie.Loc.Doc > 1 {
			return objs, err
		}
		// "{" also starts a YAML flow mapping, which is not JSON. Only the
		// first document can tell: the YAML parser would silently drop
		// what follows a complete flow mapping, such as a truncated
		// second JSON object.
		if objs, yamlErr := decodeYAML(data); yamlErr == nil {
			return objs, nil
		}
		return nil, err
	}
	return decodeYAML(data)
}

// decodeJSON splits a stream of JSON values.
func decodeJSON(data []byte) ([]Object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var objs []Object
	for doc := 1; ; {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return objs, nil
		} else if err != nil {
			return nil, &Error{Loc: Location{Doc: doc}, Err: fmt.Errorf("malformed JSON: %w", err)}
		}
		if isNull(raw) {
			continue
		}
		var err error
		if objs, err = appendObjects(objs, doc, raw); err != nil {
			return nil, err
		}
		doc++
	}
}

// decodeYAML splits a multi-document YAML stream at its "---" separators
// and converts each document to JSON.
func decodeYAML(data []byte) ([]Object, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []Object
	for doc := 1; ; {
		chunk, err := yr.Read()
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, &Error{Loc: Location{Doc: doc}, Err: fmt.Errorf("malformed YAML: %w", err)}
		}
		js, err := yaml.YAMLToJSON(chunk)
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
			return nil, &Error{Loc: Location{Doc: doc}, Err: fmt.Errorf("malformed YAML: %s", msg)}
		}
		if isNull(js) {
			continue // only comments, or nothing at all
		}
		if objs, err = appendObjects(objs, doc, js); err != nil {
			return nil, err
		}
		doc++
	}
}

func isNull(js []byte) bool {
	js = bytes.TrimSpace(js)
	return len(js) == 0 || string(js) == "null"
}

// appendObjects checks that one document is a Kubernetes object and
// appends it, or its items when it is a list.
func appendObjects(objs []Object, doc int, js []byte) ([]Object, error) {
	loc := Location{Doc: doc}
	fields, gvk, err := header(js, schema.GroupVersionKind{})
	if err != nil {
		return nil, &Error{Loc: loc, Err: err}
	}
	rawItems, hasItems := fields["items"]
	if !isList(gvk, hasItems) {
		return append(objs, Object{Loc: loc, GVK: gvk, JSON: js}), nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(rawItems, &items); err != nil {
		return nil, &Error{Loc: loc, Err: fmt.Errorf("%s: items is not a list of objects", gvkString(gvk))}
	}
	// A typed list (PodList) read from the API leaves out its items'
	// apiVersion and kind; kubectl's kind List never does.
	var itemDefault schema.GroupVersionKind
	if gvk.Kind != "List" {
		itemDefault = gvk.GroupVersion().WithKind(strings.TrimSuffix(gvk.Kind, "List"))
	}
	for i, item := range items {
		loc := Location{Doc: doc, Item: i + 1}
		if isNull(item) {
			return nil, &Error{Loc: loc, Err: errors.New("not a Kubernetes object: the item is empty")}
		}
		fields, igvk, err := header(item, itemDefault)
		if err != nil {
			return nil, &Error{Loc: loc, Err: err}
		}
		if _, ok := fields["kind"]; !ok {
			// Defaulted from the list: later decoders read them from the JSON.
			fields["apiVersion"], _ = json.Marshal(igvk.GroupVersion().String())
			fields["kind"], _ = json.Marshal(igvk.Kind)
			if item, err = json.Marshal(fields); err != nil {
				return nil, &Error{Loc: loc, Err: fmt.Errorf("re-encoding the item: %w", err)}
			}
		}
		objs = append(objs, Object{Loc: loc, GVK: igvk, JSON: item})
	}
	return objs, nil
}

// isList reports whether a document is a list to expand: kubectl's kind
// List, or a typed list such as PodList.
func isList(gvk schema.GroupVersionKind, hasItems bool) bool {
	return gvk.Kind == "List" || (hasItems && strings.HasSuffix(gvk.Kind, "List"))
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
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("not a Kubernetes object: %s is %s, want a string", name, jsonType(raw))
	}
	if s == "" {
		return "", fmt.Errorf("not a Kubernetes object: %s is empty", name)
	}
	return s, nil
}

// jsonType names the type of a JSON value for error messages.
func jsonType(js []byte) string {
	js = bytes.TrimSpace(js)
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

// pathError drops the operation and path that *fs.PathError repeats.
func pathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
