package inference

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// ProbeResult is what one small test request measured.
type ProbeResult struct {
	// TTFB is the time to the first chunk, Total to the end.
	TTFB, Total time.Duration
	// Chunks counts the chunks received.
	Chunks int
	// Text is the answer's first tokens (up to 200 bytes).
	Text string
}

// Probe sends one short chat request to b (streamed when it can stream)
// and measures it: `nemoclaw inference test`.
func Probe(ctx context.Context, b sdk.Backend, d sdk.Description, model, prompt string) (*ProbeResult, error) {
	stream := d.Has(sdk.CapStreaming)
	max := int64(16)
	body, err := json.Marshal(chatRequest{Model: model, Stream: stream, MaxTokens: &max,
		Messages: []chatMessage{{Role: "user", Content: prompt}}})
	if err != nil {
		return nil, err
	}
	res := &ProbeResult{}
	start := time.Now()
	err = b.ChatCompletions(ctx, &sdk.Request{Model: model, Stream: stream, Body: body}, writerFunc(func(ch sdk.Chunk) error {
		if res.Chunks == 0 {
			res.TTFB = time.Since(start)
		}
		res.Chunks++
		if stream {
			var cc chatChunk
			if err := json.Unmarshal(ch.Data, &cc); err != nil {
				return errMalformed("a chat stream chunk that does not parse")
			}
			for _, c := range cc.Choices {
				if c.Delta.Content != nil && len(res.Text) < 200 {
					res.Text += *c.Delta.Content
				}
			}
			return nil
		}
		cr, err := parseChatResponse(ch.Data)
		if err != nil {
			return err
		}
		res.Text = cr.text
		return nil
	}))
	res.Total = time.Since(start)
	if err != nil {
		return nil, err
	}
	if res.Chunks == 0 {
		return nil, errors.New("the backend answered nothing")
	}
	if len(res.Text) > 200 {
		res.Text = res.Text[:200]
	}
	return res, nil
}

// writerFunc adapts a function to sdk.StreamWriter.
type writerFunc func(sdk.Chunk) error

// Send implements sdk.StreamWriter.
func (f writerFunc) Send(c sdk.Chunk) error { return f(c) }
