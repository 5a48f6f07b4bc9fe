package ollama

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// Completions implements sdk.Backend (POST /v1/completions) through
// POST /api/generate.
func (b *Backend) Completions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	r := b.route()
	olReq, err := generateRequest(req.Body, r)
	if err != nil {
		return err
	}
	// Always streamed from Ollama, for the idle timer (see ChatCompletions).
	wantStream := olReq.Stream
	olReq.Stream = true
	in, done, err := b.openStream(ctx, r, "/api/generate", olReq.Model, olReq)
	if err != nil {
		return err
	}
	defer done()
	id, created := newID("cmpl-"), time.Now().Unix()
	text := func(model, s string, finish *string, u *oaUsage) oaTextResponse {
		return oaTextResponse{ID: id, Object: "text_completion", Created: created, Model: model,
			Choices: []oaTextChoice{{Text: s, FinishReason: finish}}, Usage: u}
	}
	model := olReq.Model
	var all strings.Builder // the whole answer, when not streamed
	for {
		var line olGenerateResponse
		if err := in.next(&line); err == io.EOF {
			return truncated(in.path)
		} else if err != nil {
			return err
		}
		model = orModel(line.Model, model)
		if !wantStream {
			all.WriteString(line.Response)
			if all.Len() > MaxBodyBytes {
				return badGateway("Ollama's %s answer is larger than %d bytes", in.path, MaxBodyBytes)
			}
		} else if line.Response != "" {
			if err := send(w, text(model, line.Response, nil, nil), nil); err != nil {
				return err
			}
		}
		if line.Done {
			u, su := usage(line.olMetrics)
			return send(w, text(model, all.String(), ptr(finishReason(line.DoneReason, false)), u), su)
		}
	}
}

// generateRequest translates an OpenAI completions body into /api/generate's.
func generateRequest(body []byte, r route) (*olGenerateRequest, error) {
	var in oaCompletionRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("the completion request is not valid JSON: %v", err)
	}
	m, err := model(in.Model, r)
	if err != nil {
		return nil, err
	}
	out := &olGenerateRequest{Model: m, Suffix: in.Suffix, Stream: in.Stream, KeepAlive: r.keepAlive}
	if out.Options, err = in.options(r); err != nil {
		return nil, err
	}
	// OpenAI allows a string, an array of strings, or token ids; Ollama
	// takes one string, so only a single prompt goes through.
	prompts, err := stringOrStrings(in.Prompt, "prompt")
	if err != nil || len(prompts) != 1 {
		return nil, badRequest("prompt must be one string (Ollama generates one completion per request, from text)")
	}
	out.Prompt = prompts[0]
	return out, nil
}

// orModel is the model Ollama named, else the one asked for.
func orModel(got, asked string) string {
	if got != "" {
		return got
	}
	return asked
}
