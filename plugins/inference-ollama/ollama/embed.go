package ollama

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// Embeddings implements sdk.Backend (POST /v1/embeddings) through
// POST /api/embed, answering OpenAI's embedding list (floats, or base64 of
// little-endian float32 when encoding_format is "base64", as OpenAI's
// Python client asks by default).
func (b *Backend) Embeddings(ctx context.Context, req *sdk.Request) (*sdk.Chunk, error) {
	r := b.route()
	var in oaEmbeddingRequest
	if err := json.Unmarshal(req.Body, &in); err != nil {
		return nil, badRequest("the embeddings request is not valid JSON: %v", err)
	}
	m, err := model(in.Model, r)
	if err != nil {
		return nil, err
	}
	switch in.EncodingFormat {
	case "", "float", "base64":
	default:
		return nil, badRequest("encoding_format %q is not float or base64", in.EncodingFormat)
	}
	if in.Dimensions < 0 {
		return nil, badRequest("dimensions %d is negative", in.Dimensions)
	}
	inputs, err := stringOrStrings(in.Input, "input")
	if err != nil || len(inputs) == 0 {
		return nil, badRequest("input must be a string or a non-empty array of strings (Ollama embeds text, not token ids)")
	}
	body, err := json.Marshal(olEmbedRequest{Model: m, Input: inputs, Dimensions: in.Dimensions, KeepAlive: r.keepAlive})
	if err != nil {
		return nil, badRequest("encode the embeddings request: %v", err)
	}
	r.model = m // named in a 404's advice
	resp, cancel, err := b.do(ctx, r, "POST", "/api/embed", body)
	if err != nil {
		return nil, err
	}
	defer cancel()
	defer resp.Body.Close()
	var out olEmbedResponse
	if err := decodeBody(resp.Body, "/api/embed", &out); err != nil {
		return nil, err
	}
	if len(out.Embeddings) != len(inputs) {
		return nil, badGateway("Ollama's /api/embed answered %d embeddings for %d inputs", len(out.Embeddings), len(inputs))
	}
	list := oaEmbeddingList{Object: "list", Model: orModel(out.Model, m), Data: make([]oaEmbedding, len(out.Embeddings))}
	for i, e := range out.Embeddings {
		var v any = e
		if in.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(e))
			for k, f := range e {
				binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(f))
			}
			v = base64.StdEncoding.EncodeToString(buf)
		}
		list.Data[i] = oaEmbedding{Object: "embedding", Embedding: v, Index: i}
	}
	list.Usage.PromptTokens, list.Usage.TotalTokens = out.PromptEvalCount, out.PromptEvalCount
	data, err := json.Marshal(list)
	if err != nil {
		return nil, badGateway("encode the embeddings: %v", err)
	}
	return &sdk.Chunk{Data: data, Usage: &sdk.Usage{PromptTokens: out.PromptEvalCount, TotalTokens: out.PromptEvalCount}}, nil
}
