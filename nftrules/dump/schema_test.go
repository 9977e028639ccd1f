package dump_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/nftproxy/nftproxy/nftrules/dump"
	"github.com/nftproxy/nftproxy/nftrules/dump/schematest"
)

// TestSchemaDocExamplesValidate: the examples of docs/dump-schema.md
// follow the schema they illustrate.
func TestSchemaDocExamplesValidate(t *testing.T) {
	schema := schematest.Schema(t)
	doc, err := os.ReadFile("../../docs/dump-schema.md")
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
		if errs := schematest.Validate(schema, schema, v); len(errs) > 0 {
			t.Errorf("example %d violates the schema:\n%s", i+1, strings.Join(errs, "\n"))
		}
	}
}

// TestSchemaCoversGoTypes: every JSON field of the dump types is in the
// schema, and the schema has no property the types lack.
func TestSchemaCoversGoTypes(t *testing.T) {
	schema := schematest.Schema(t)
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
	schema := schematest.Schema(t)
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
		if errs := schematest.Validate(schema, schema, doc); len(errs) == 0 {
			t.Errorf("validator accepts %s", bad)
		}
	}
	var ok any
	_ = json.Unmarshal([]byte(`{"schemaVersion": 1, "comparedWithAPI": false, "tables": [], "services": []}`), &ok)
	if errs := schematest.Validate(schema, schema, ok); len(errs) > 0 {
		t.Errorf("validator rejects an empty dump: %v", errs)
	}
}
