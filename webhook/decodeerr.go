package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// describeDecodeError turns a failure to decode value (at prefix, such as
// "request.object") into one line that names the field, what it wants and
// what it got, without Go types: "request.object.spec.containers: want an
// array, got a string". into is a pointer to the type value should decode
// into; it is decoded again with encoding/json/v2 for the error's location.
func describeDecodeError(prefix string, value []byte, into any, err error) error {
	trimmed := bytes.TrimSpace(value)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return fmt.Errorf("%s: missing", prefix)
	}
	if !jsontext.Value(trimmed).IsValid() {
		return fmt.Errorf("%s: not valid JSON", prefix)
	}
	var se *jsonv2.SemanticError
	if e := jsonv2.Unmarshal(trimmed, into); !errors.As(e, &se) {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	where := strings.TrimPrefix(prefix+fieldPath(se.JSONPointer), ".")
	if where == "" {
		where = "the body"
	}
	if se.JSONKind != 0 && se.GoType != nil && !wantsKind(se.GoType, se.JSONKind) {
		return fmt.Errorf("%s: want %s, got %s", where, jsonKindOf(se.GoType), kindName(se.JSONKind))
	}
	if se.Err != nil {
		if len(se.JSONValue) > 0 {
			return fmt.Errorf("%s: %s: %w", where, se.JSONValue, se.Err)
		}
		return fmt.Errorf("%s: %w", where, se.Err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// fieldPath writes a JSON pointer as a field path: /spec/containers/0/name
// is .spec.containers[0].name.
func fieldPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if strings.ContainsAny(tok, `."[]`) {
			b.WriteString("[" + strconv.Quote(tok) + "]")
			continue
		}
		b.WriteString("." + tok)
	}
	return b.String()
}

// jsonKindOf is the JSON a Go type decodes from, in words.
func jsonKindOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(reflect.TypeFor[jsonv2.Unmarshaler]()) || reflect.PointerTo(t).Implements(reflect.TypeFor[jsonv2.Unmarshaler]()) {
		return "a string" // quantities, times and int-or-strings are written as strings
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another value"
}

// wantsKind reports whether the JSON kind is one the type decodes from
// (the error is then about the value, not its kind).
func wantsKind(t reflect.Type, k jsontext.Kind) bool {
	want := jsonKindOf(t)
	switch k {
	case '"':
		return want == "a string" || want == "a base64 string"
	case '0':
		return want == "an integer" || want == "a number"
	case '[':
		return want == "an array"
	case '{':
		return want == "an object"
	case 't', 'f':
		return want == "true or false"
	}
	return false
}

// kindName is a JSON kind in words.
func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '[':
		return "an array"
	case '{':
		return "an object"
	case 't':
		return "true"
	case 'f':
		return "false"
	case 'n':
		return "null"
	}
	return "another value"
}
