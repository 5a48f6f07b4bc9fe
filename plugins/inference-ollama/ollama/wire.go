package ollama

import "encoding/json"

// Ollama's native API, written from its published docs (docs/api.md of
// github.com/ollama/ollama): only the fields this backend sends or reads.
// Ollama's own module is not imported, to keep nemoclaw's dependencies lean.

// olMessage is one message of /api/chat, in a request or a response.
type olMessage struct {
	Role       string       `json:"role"`
	Content    string       `json:"content"`
	Thinking   string       `json:"thinking,omitempty"`
	Images     []string     `json:"images,omitempty"`
	ToolCalls  []olToolCall `json:"tool_calls,omitempty"`
	ToolName   string       `json:"tool_name,omitempty"`
	ToolCallID string       `json:"tool_call_id,omitempty"`
}

// olToolCall is a tool call: Ollama gives arguments as a JSON object where
// OpenAI gives a string holding JSON.
type olToolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Index     int             `json:"index,omitempty"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// olChatRequest is the body of POST /api/chat.
type olChatRequest struct {
	Model     string            `json:"model"`
	Messages  []olMessage       `json:"messages"`
	Tools     []json.RawMessage `json:"tools,omitempty"`
	Format    json.RawMessage   `json:"format,omitempty"`
	Options   map[string]any    `json:"options,omitempty"`
	Stream    bool              `json:"stream"`
	KeepAlive string            `json:"keep_alive,omitempty"`
}

// olGenerateRequest is the body of POST /api/generate.
type olGenerateRequest struct {
	Model     string          `json:"model"`
	Prompt    string          `json:"prompt"`
	Suffix    string          `json:"suffix,omitempty"`
	Format    json.RawMessage `json:"format,omitempty"`
	Options   map[string]any  `json:"options,omitempty"`
	Stream    bool            `json:"stream"`
	KeepAlive string          `json:"keep_alive,omitempty"`
}

// olMetrics are the counts on a final ("done": true) response.
type olMetrics struct {
	PromptEvalCount int64 `json:"prompt_eval_count"`
	EvalCount       int64 `json:"eval_count"`
}

// olChatResponse is one NDJSON line of /api/chat (or its whole body when
// not streamed). Error is set on a line that reports a failure mid-stream.
type olChatResponse struct {
	Model      string    `json:"model"`
	Message    olMessage `json:"message"`
	Done       bool      `json:"done"`
	DoneReason string    `json:"done_reason"`
	Error      string    `json:"error"`
	olMetrics
}

// olGenerateResponse is one NDJSON line of /api/generate.
type olGenerateResponse struct {
	Model      string `json:"model"`
	Response   string `json:"response"`
	Done       bool   `json:"done"`
	DoneReason string `json:"done_reason"`
	Error      string `json:"error"`
	olMetrics
}

// olEmbedRequest is the body of POST /api/embed.
type olEmbedRequest struct {
	Model      string   `json:"model"`
	Input      []string `json:"input"`
	Dimensions int      `json:"dimensions,omitempty"`
	Truncate   *bool    `json:"truncate,omitempty"`
	KeepAlive  string   `json:"keep_alive,omitempty"`
}

// olEmbedResponse is the body /api/embed answers.
type olEmbedResponse struct {
	Model           string      `json:"model"`
	Embeddings      [][]float32 `json:"embeddings"`
	PromptEvalCount int64       `json:"prompt_eval_count"`
}

// olTags is the body GET /api/tags answers.
type olTags struct {
	Models []struct {
		Name       string `json:"name"`
		Model      string `json:"model"`
		ModifiedAt string `json:"modified_at"`
	} `json:"models"`
}

// olError is the body of an Ollama error: {"error": "..."}.
type olError struct {
	Error string `json:"error"`
}

// OpenAI's shapes, as the router hands them in and passes them out.

// oaMessage is one message of a chat/completions request.
type oaMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  []oaToolCall    `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

// oaPart is one part of a message whose content is an array.
type oaPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url"`
}

// oaToolCall is a tool call in a message (request or response); Index is
// set only in stream deltas.
type oaToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// oaTool is an entry of "tools".
type oaTool struct {
	Type     string `json:"type"`
	Function *struct {
		Name string `json:"name"`
	} `json:"function"`
}

// oaSampling are the sampling fields chat and completions share.
type oaSampling struct {
	Model               string          `json:"model"`
	Stream              bool            `json:"stream"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	N                   *int            `json:"n"`
}

// oaChatRequest is a chat/completions request.
type oaChatRequest struct {
	oaSampling
	Messages       []oaMessage       `json:"messages"`
	Tools          []json.RawMessage `json:"tools"`
	ResponseFormat *struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
}

// oaCompletionRequest is a (legacy) completions request.
type oaCompletionRequest struct {
	oaSampling
	Prompt json.RawMessage `json:"prompt"`
	Suffix string          `json:"suffix"`
}

// oaEmbeddingRequest is an embeddings request.
type oaEmbeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     int             `json:"dimensions"`
}

// oaUsage is OpenAI's token accounting.
type oaUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// oaRespMessage is the assistant message of a chat completion (or a delta).
type oaRespMessage struct {
	Role      string       `json:"role,omitempty"`
	Content   *string      `json:"content,omitempty"`
	Reasoning string       `json:"reasoning,omitempty"`
	ToolCalls []oaToolCall `json:"tool_calls,omitempty"`
}

// oaChatChoice is a choice of chat.completion (Message) or of
// chat.completion.chunk (Delta).
type oaChatChoice struct {
	Index        int            `json:"index"`
	Message      *oaRespMessage `json:"message,omitempty"`
	Delta        *oaRespMessage `json:"delta,omitempty"`
	FinishReason *string        `json:"finish_reason"`
}

// oaChatResponse is chat.completion or chat.completion.chunk.
type oaChatResponse struct {
	ID      string         `json:"id"`
	Object  string         `json:"object"`
	Created int64          `json:"created"`
	Model   string         `json:"model"`
	Choices []oaChatChoice `json:"choices"`
	Usage   *oaUsage       `json:"usage,omitempty"`
}

// oaTextChoice is a choice of text_completion.
type oaTextChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

// oaTextResponse is text_completion (whole or a stream chunk).
type oaTextResponse struct {
	ID      string         `json:"id"`
	Object  string         `json:"object"`
	Created int64          `json:"created"`
	Model   string         `json:"model"`
	Choices []oaTextChoice `json:"choices"`
	Usage   *oaUsage       `json:"usage,omitempty"`
}

// oaEmbedding is one entry of an embeddings list; Embedding is []float32
// or, for encoding_format "base64", a string.
type oaEmbedding struct {
	Object    string `json:"object"`
	Embedding any    `json:"embedding"`
	Index     int    `json:"index"`
}

// oaEmbeddingList is the embeddings response.
type oaEmbeddingList struct {
	Object string        `json:"object"`
	Data   []oaEmbedding `json:"data"`
	Model  string        `json:"model"`
	Usage  struct {
		PromptTokens int64 `json:"prompt_tokens"`
		TotalTokens  int64 `json:"total_tokens"`
	} `json:"usage"`
}
