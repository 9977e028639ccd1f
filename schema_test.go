package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/dump"
)

// dumpSchema returns the JSON Schema documented in docs/dump-schema.md
// (the first ```json block).
func dumpSchema(t testing.TB) map[string]any {
	t.Helper()
	doc, err := os.ReadFile("docs/dump-schema.md")
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

// validateSchema checks a decoded JSON document against the subset of
// JSON Schema (2020-12) the dump schema uses: type, enum, required,
// properties, additionalProperties false, items, minimum, maximum and
// local $ref. Any other keyword is an error, so the subset cannot grow
// silently. It returns every violation found.
func validateSchema(root, schema map[string]any, doc any) []string {
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
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
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

// TestSchemaDocExamplesValidate: the examples of docs/dump-schema.md
// follow the schema they illustrate.
func TestSchemaDocExamplesValidate(t *testing.T) {
	schema := dumpSchema(t)
	doc, err := os.ReadFile("docs/dump-schema.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 2 {
		t.Fatal("docs/dump-schema.md has no example")
	}
	for i, b := range blocks[1:] {
		var v any
		if err := json.Unmarshal(b[1], &v); err != nil {
			t.Fatalf("example %d: %v", i+1, err)
		}
		if errs := validateSchema(schema, schema, v); len(errs) > 0 {
			t.Errorf("example %d violates the schema:\n%s", i+1, strings.Join(errs, "\n"))
		}
	}
}

// TestSchemaCoversGoTypes: every JSON field of the dump types is in the
// schema, and the schema has no property the types lack.
func TestSchemaCoversGoTypes(t *testing.T) {
	schema := dumpSchema(t)
	defs := schema["$defs"].(map[string]any)
	def := func(name string) map[string]any {
		if name == "" {
			return schema
		}
		d, ok := defs[name].(map[string]any)
		if !ok {
			t.Fatalf("schema has no $defs/%s", name)
		}
		return d
	}
	masq := def("table")["properties"].(map[string]any)["masquerade"].(map[string]any)
	for _, c := range []struct {
		typ    reflect.Type
		schema map[string]any
	}{
		{reflect.TypeFor[dump.Dump](), def("")},
		{reflect.TypeFor[dump.Table](), def("table")},
		{reflect.TypeFor[dump.Masquerade](), masq},
		{reflect.TypeFor[dump.ServicePort](), def("servicePort")},
		{reflect.TypeFor[dump.Frontend](), def("frontend")},
		{reflect.TypeFor[dump.Endpoint](), def("endpoint")},
		{reflect.TypeFor[dump.APIPort](), def("apiPort")},
	} {
		props := c.schema["properties"].(map[string]any)
		fields := map[string]bool{}
		for i := 0; i < c.typ.NumField(); i++ {
			name, _, _ := strings.Cut(c.typ.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = true
			if _, ok := props[name]; !ok {
				t.Errorf("%s.%s (json %q) is not in docs/dump-schema.md", c.typ.Name(), c.typ.Field(i).Name, name)
			}
		}
		for name := range props {
			if !fields[name] {
				t.Errorf("schema property %q has no field in %s", name, c.typ.Name())
			}
		}
	}
}

// TestSchemaValidatorRejects makes sure the validator is not vacuous.
func TestSchemaValidatorRejects(t *testing.T) {
	schema := dumpSchema(t)
	for _, bad := range []string{
		`{}`,
		`{"schemaVersion": 2, "comparedWithAPI": false, "tables": [], "services": []}`,
		`{"schemaVersion": 1, "comparedWithAPI": false, "tables": [], "services": [], "extra": 1}`,
		`{"schemaVersion": 1, "comparedWithAPI": false, "tables": [], "services": [{"portName": "", "protocol": "ICMP", "port": 1, "families": []}]}`,
		`{"schemaVersion": 1, "comparedWithAPI": false, "tables": [], "services": [{"portName": "", "protocol": "TCP", "port": 70000, "families": []}]}`,
		`{"schemaVersion": 1, "comparedWithAPI": false, "tables": [{"family": "inet"}], "services": []}`,
	} {
		var doc any
		if err := json.Unmarshal([]byte(bad), &doc); err != nil {
			t.Fatal(err)
		}
		if errs := validateSchema(schema, schema, doc); len(errs) == 0 {
			t.Errorf("validator accepts %s", bad)
		}
	}
	var ok any
	_ = json.Unmarshal([]byte(`{"schemaVersion": 1, "comparedWithAPI": false, "tables": [], "services": []}`), &ok)
	if errs := validateSchema(schema, schema, ok); len(errs) > 0 {
		t.Errorf("validator rejects an empty dump: %v", errs)
	}
}
