// Command openaiclient calls inference.local with the official OpenAI Go
// client from inside a sandbox, once per API the router serves, and prints
// one line per call: what TestOpenAIClientInSandbox checks.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"
)

func main() {
	base := "https://inference.local/v1"
	if len(os.Args) > 1 {
		base = os.Args[1]
	}
	ctx := context.Background()
	cl := openai.NewClient(option.WithBaseURL(base), option.WithAPIKey("sk-agent-placeholder"), option.WithMaxRetries(0))
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}
	fail := func(what string, err error) {
		fmt.Printf("%s ERROR %v\n", what, err)
		os.Exit(1)
	}

	c, err := cl.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: msgs})
	if err != nil {
		fail("chat", err)
	}
	fmt.Printf("chat %s %q\n", c.Model, c.Choices[0].Message.Content)

	st := cl.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: msgs})
	var acc openai.ChatCompletionAccumulator
	n := 0
	for st.Next() {
		acc.AddChunk(st.Current())
		n++
	}
	if err := st.Err(); err != nil {
		fail("stream", err)
	}
	fmt.Printf("stream %d chunks %q\n", n, acc.Choices[0].Message.Content)

	tool := shared.FunctionDefinitionParam{Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object",
		"properties": map[string]any{"city": map[string]any{"type": "string"}}}}
	tc, err := cl.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: msgs,
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(tool)}})
	if err != nil {
		fail("tools", err)
	}
	fmt.Printf("tools %s %s\n", tc.Choices[0].Message.ToolCalls[0].Function.Name, tc.Choices[0].Message.ToolCalls[0].Function.Arguments)

	r, err := cl.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")}})
	if err != nil {
		fail("responses", err)
	}
	fmt.Printf("responses %s %q\n", r.Status, r.OutputText())

	rs := cl.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")}})
	text := ""
	for rs.Next() {
		if ev := rs.Current(); ev.Type == "response.output_text.delta" {
			text += ev.Delta
		}
	}
	if err := rs.Err(); err != nil {
		fail("responses-stream", err)
	}
	fmt.Printf("responses-stream %q\n", text)

	e, err := cl.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "gpt-4o", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	if err != nil {
		fail("embeddings", err)
	}
	fmt.Printf("embeddings %d\n", len(e.Data[0].Embedding))

	pg, err := cl.Models.List(ctx)
	if err != nil {
		fail("models", err)
	}
	for _, m := range pg.Data {
		fmt.Printf("model %s\n", m.ID)
	}
}
