// Command openapi2jsonschema converts Kubernetes's OpenAPI v2 document
// (api/openapi-spec/swagger.json of k8s.io/kubernetes) into one JSON schema
// per kind, named as kubeconform expects ({{ .ResourceKind }}{{ .KindSuffix }}.json:
// deployment-apps-v1.json, service-v1.json, networkpolicy-networking-v1.json).
// The schemas are strict: every object with properties gets
// "additionalProperties": false, so unknown or misspelt fields fail.
//
//	openapi2jsonschema -in swagger.json -out DIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const refPrefix = "#/definitions/"

func main() {
	in := flag.String("in", "", "swagger.json of k8s.io/kubernetes")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *in == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	n, err := convert(*in, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openapi2jsonschema:", err)
		os.Exit(1)
	}
	fmt.Printf("openapi2jsonschema: %d schemas in %s\n", n, *out)
}

func convert(in, out string) (int, error) {
	b, err := os.ReadFile(in)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return 0, fmt.Errorf("%s: %w", in, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, err
	}
	names := make([]string, 0, len(doc.Definitions))
	for name := range doc.Definitions {
		names = append(names, name)
	}
	sort.Strings(names)
	written := 0
	for _, name := range names {
		def := doc.Definitions[name]
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk, _ := g.(map[string]any)
			group, _ := gvk["group"].(string)
			version, _ := gvk["version"].(string)
			kind, _ := gvk["kind"].(string)
			if kind == "" || version == "" {
				continue
			}
			schema := standalone(doc.Definitions, name)
			schema["$schema"] = "http://json-schema.org/draft-07/schema#"
			file := strings.ToLower(kind)
			if group != "" {
				file += "-" + strings.ToLower(strings.Split(group, ".")[0])
			}
			file += "-" + strings.ToLower(version) + ".json"
			// The same kind under several groups would collide (e.g. Event in
			// core and events.k8s.io): the group's first label tells them apart.
			data, err := json.Marshal(schema)
			if err != nil {
				return written, err
			}
			if err := os.WriteFile(filepath.Join(out, file), data, 0o644); err != nil {
				return written, err
			}
			written++
		}
	}
	return written, nil
}

// standalone returns the schema of definition name with the definitions it
// reaches (transformed) under "definitions", so that references resolve inside
// the file.
func standalone(all map[string]map[string]any, name string) map[string]any {
	reach := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if r, ok := t["$ref"].(string); ok && strings.HasPrefix(r, refPrefix) {
				n := strings.TrimPrefix(r, refPrefix)
				if !reach[n] {
					reach[n] = true
					walk(all[n])
				}
			}
			for _, sub := range t {
				walk(sub)
			}
		case []any:
			for _, sub := range t {
				walk(sub)
			}
		}
	}
	walk(all[name])
	defs := map[string]any{}
	for n := range reach {
		defs[n] = transform(n, deepCopy(all[n]))
	}
	top := transform(name, deepCopy(all[name])).(map[string]any)
	top["definitions"] = defs
	return top
}

func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// transform makes a definition strict and maps OpenAPI formats that JSON
// schema cannot express (int-or-string, quantities) to type unions.
func transform(name string, v any) any {
	switch name {
	case "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
		return map[string]any{"type": []any{"string", "integer"}}
	case "io.k8s.apimachinery.pkg.api.resource.Quantity":
		return map[string]any{"type": []any{"string", "number"}}
	}
	return strict(v)
}

func strict(v any) any {
	switch t := v.(type) {
	case map[string]any:
		if f, _ := t["format"].(string); f == "int-or-string" {
			delete(t, "format")
			t["type"] = []any{"string", "integer"}
		}
		for k, sub := range t {
			if k == "properties" {
				props, _ := sub.(map[string]any)
				for pk, pv := range props {
					props[pk] = strict(pv)
				}
				continue
			}
			t[k] = strict(sub)
		}
		if _, ok := t["properties"]; ok {
			if _, set := t["additionalProperties"]; !set {
				t["additionalProperties"] = false
			}
		}
		return t
	case []any:
		for i := range t {
			t[i] = strict(t[i])
		}
		return t
	}
	return v
}
