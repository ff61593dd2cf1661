package chartcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Object is one Kubernetes object decoded from YAML.
type Object map[string]any

// Kind is the object's kind.
func (o Object) Kind() string { s, _ := o["kind"].(string); return s }

// Name is metadata.name.
func (o Object) Name() string { s, _ := Get(o, "metadata", "name").(string); return s }

// APIVersion is the object's apiVersion.
func (o Object) APIVersion() string { s, _ := o["apiVersion"].(string); return s }

// Key is kind/name.
func (o Object) Key() string { return o.Kind() + "/" + o.Name() }

// Get walks maps (string keys) and lists (int keys).
func Get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if o, ok2 := v.(Object); ok2 {
					m = o
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k < 0 || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// ReadObjects decodes every non-empty document of a multi-document YAML file.
func ReadObjects(path string) ([]Object, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return DecodeObjects(b)
}

// DecodeObjects decodes every non-empty document of a multi-document YAML stream.
func DecodeObjects(b []byte) ([]Object, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []Object
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode YAML: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, Object(normalize(m).(map[string]any)))
	}
}

// normalize turns every number into int64 or float64 so that objects decoded
// from different writers compare equal.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, sub := range t {
			t[k] = normalize(sub)
		}
		return t
	case []any:
		for i := range t {
			t[i] = normalize(t[i])
		}
		return t
	case int:
		return int64(t)
	case uint64:
		return int64(t)
	case float64:
		if t == float64(int64(t)) {
			return int64(t)
		}
		return t
	}
	return v
}

// FileName is the file an object is written to: <kind>-<name>.yaml.
func FileName(o Object) string {
	return strings.ToLower(o.Kind()) + "-" + o.Name() + ".yaml"
}
