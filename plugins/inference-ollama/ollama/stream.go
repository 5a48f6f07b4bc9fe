package ollama

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ndjson reads Ollama's streamed answers: one JSON object per line, each
// line at most MaxLineBytes, ending with an object whose "done" is true.
type ndjson struct {
	sc   *bufio.Scanner
	path string
}

func newNDJSON(r io.Reader, path string) *ndjson {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	return &ndjson{sc: sc, path: path}
}

// line is a streamed object that may carry Ollama's {"error": "..."}.
type line interface{ errText() string }

func (r *olChatResponse) errText() string     { return r.Error }
func (r *olGenerateResponse) errText() string { return r.Error }

// next decodes the next non-empty line into v. It returns io.EOF at the
// end of the body, and an *sdk.Error for an over-long or malformed line,
// a transport failure, or an {"error": "..."} line.
func (s *ndjson) next(v line) error {
	for s.sc.Scan() {
		raw := bytes.TrimSpace(s.sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		if err := json.Unmarshal(raw, v); err != nil {
			// An error line is still reported as such if the rest is garbled.
			var e olError
			if json.Unmarshal(raw, &e) == nil && e.Error != "" {
				return streamFailed(s.path, e.Error)
			}
			if !json.Valid(raw) {
				return badGateway("Ollama's %s stream has a line that is not JSON: %v", s.path, err)
			}
			return badGateway("Ollama's %s stream has a line that is not the JSON its API documents: %v", s.path, err)
		}
		if msg := v.errText(); msg != "" {
			return streamFailed(s.path, msg)
		}
		return nil
	}
	err := s.sc.Err()
	switch {
	case err == nil:
		return io.EOF
	case errors.Is(err, bufio.ErrTooLong):
		return badGateway("Ollama's %s stream has a line longer than %d bytes", s.path, MaxLineBytes)
	default:
		if isSDKError(err) { // the idle timeout, from idleBody
			return err
		}
		return upstreamErr(err, "read Ollama's %s stream", s.path)
	}
}

// streamFailed is the error for an {"error": "..."} line.
func streamFailed(path, msg string) error {
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage] + "…"
	}
	return badGateway("Ollama's %s stream failed: %s", path, msg)
}

// truncated is the error for a stream that ended before its final object.
func truncated(path string) error {
	return badGateway("Ollama's %s stream ended before its final message (no \"done\": true): the answer is incomplete", path)
}
