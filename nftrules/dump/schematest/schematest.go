// Package schematest checks dump's JSON output against the schema that
// docs/dump-schema.md documents. It is for tests (of nftrules/dump, and of
// the --dump command in proxier/app), which run in different directories:
// the document is found from this file's own path.
package schematest

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// schemaDoc is docs/dump-schema.md's path, from this source file's.
func schemaDoc() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "docs", "dump-schema.md")
}

// Schema returns the JSON Schema documented in docs/dump-schema.md
// (the first ```json block).
func Schema(t testing.TB) map[string]any {
	t.Helper()
	doc, err := os.ReadFile(schemaDoc())
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```json\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/dump-schema.md has no ```json block")
	}
	var schema map[string]any
	if err := json.Unmarshal(m[1], &schema); err != nil {
		t.Fatalf("schema in docs/dump-schema.md: %v", err)
	}
	return schema
}

// Validate checks a decoded JSON document against the subset of
// JSON Schema (2020-12) the dump schema uses: type, enum, required,
// properties, additionalProperties false, items, minimum, maximum and
// local $ref. Any other keyword is an error, so the subset cannot grow
// silently. It returns every violation found.
func Validate(root, schema map[string]any, doc any) []string {
	var errs []string
	var walk func(s map[string]any, v any, path string)
	walk = func(s map[string]any, v any, path string) {
		if ref, ok := s["$ref"].(string); ok {
			name, found := strings.CutPrefix(ref, "#/$defs/")
			def, ok := root["$defs"].(map[string]any)[name].(map[string]any)
			if !found || !ok {
				errs = append(errs, fmt.Sprintf("%s: unresolvable $ref %q", path, ref))
				return
			}
			s = def
		}
		for k := range s {
			switch k {
			case "$schema", "$id", "title", "$defs", "type", "enum", "required", "properties", "additionalProperties", "items", "minimum", "maximum":
			default:
				errs = append(errs, fmt.Sprintf("%s: schema keyword %q not supported by the test validator", path, k))
			}
		}
		switch typ := s["type"]; typ {
		case "object":
			obj, ok := v.(map[string]any)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: %T, want object", path, v))
				return
			}
			props, _ := s["properties"].(map[string]any)
			for _, r := range s["required"].([]any) {
				if _, ok := obj[r.(string)]; !ok {
					errs = append(errs, fmt.Sprintf("%s: required %q missing", path, r))
				}
			}
			for _, k := range slices.Sorted(maps.Keys(obj)) {
				ps, ok := props[k].(map[string]any)
				if !ok {
					if s["additionalProperties"] == false {
						errs = append(errs, fmt.Sprintf("%s: property %q not in the schema", path, k))
					}
					continue
				}
				walk(ps, obj[k], path+"."+k)
			}
		case "array":
			arr, ok := v.([]any)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: %T, want array", path, v))
				return
			}
			if items, ok := s["items"].(map[string]any); ok {
				for i, e := range arr {
					walk(items, e, fmt.Sprintf("%s[%d]", path, i))
				}
			}
		case "string":
			if _, ok := v.(string); !ok {
				errs = append(errs, fmt.Sprintf("%s: %T, want string", path, v))
			}
		case "boolean":
			if _, ok := v.(bool); !ok {
				errs = append(errs, fmt.Sprintf("%s: %T, want boolean", path, v))
			}
		case "integer":
			n, ok := v.(float64)
			if !ok || n != float64(int64(n)) {
				errs = append(errs, fmt.Sprintf("%s: %v, want integer", path, v))
				return
			}
			if m, ok := s["minimum"].(float64); ok && n < m {
				errs = append(errs, fmt.Sprintf("%s: %v < minimum %v", path, n, m))
			}
			if m, ok := s["maximum"].(float64); ok && n > m {
				errs = append(errs, fmt.Sprintf("%s: %v > maximum %v", path, n, m))
			}
		default:
			errs = append(errs, fmt.Sprintf("%s: schema type %v not supported", path, typ))
		}
		if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
			errs = append(errs, fmt.Sprintf("%s: %v not in %v", path, v, enum))
		}
	}
	walk(schema, doc, "$")
	return errs
}
