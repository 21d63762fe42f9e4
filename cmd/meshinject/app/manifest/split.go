package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// document is one document of a manifest stream.
type document struct {
	// Raw is the document's bytes, exactly as in the input.
	Raw []byte
	// Index is the 1-based position of the document in the stream.
	Index int
	// Line is the 1-based input line the document starts on.
	Line int
	// JSON is true when the document is JSON.
	JSON bool
}

// Split cuts data into documents: YAML documents separated by "---" lines,
// or a stream of JSON values when data starts with '{' or '['.
func Split(data []byte) ([]document, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return splitJSON(data)
	}
	var docs []document
	start, line, startLine := 0, 1, 1
	flush := func(end int) {
		raw := data[start:end]
		docs = append(docs, document{Raw: raw, Index: len(docs) + 1, Line: startLine})
	}
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		if j >= 0 {
			next = i + j + 1
		}
		l := bytes.TrimRight(data[i:next], " \t\r\n")
		if bytes.Equal(l, []byte("---")) || bytes.HasPrefix(l, []byte("--- ")) || bytes.HasPrefix(l, []byte("---\t")) {
			if i > start || len(docs) > 0 {
				flush(i)
			}
			start, startLine = next, line+1
		}
		line++
		i = next
	}
	if start < len(data) || len(docs) == 0 {
		flush(len(data))
	}
	return docs, nil
}

func splitJSON(data []byte) ([]document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []document
	for {
		startOff := dec.InputOffset()
		var v json.RawMessage
		err := dec.Decode(&v)
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d, line %d: %w", len(docs)+1, lineAt(data, int(dec.InputOffset())), err)
		}
		start := int(startOff)
		for start < len(data) && (data[start] == ' ' || data[start] == '\t' || data[start] == '\r' || data[start] == '\n') {
			start++
		}
		docs = append(docs, document{Raw: v, Index: len(docs) + 1, Line: lineAt(data, start), JSON: true})
	}
}

// lineAt returns the 1-based line of byte offset off.
func lineAt(data []byte, off int) int {
	if off > len(data) {
		off = len(data)
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}
