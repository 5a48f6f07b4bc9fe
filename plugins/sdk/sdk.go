// Package sdk is what a third party imports to write a nemoclaw inference
// backend plugin: plain Go types, one Backend interface to implement, and one
// Serve call in main. A plugin runs on the host, outside every sandbox, holds
// the backend's credential and talks to the real service; nemoclaw's router
// hands it OpenAI-shaped requests that the agent sent to inference.local.
//
// This package never imports nemoclaw's runner packages: a plugin built
// against it links only the protocol (see schema/inference.proto).
package sdk

import (
	"context"
	"fmt"
)

// ProtocolVersion is the plugin protocol's version, checked in go-plugin's
// handshake: a plugin and a nemoclaw that disagree refuse each other.
const ProtocolVersion = 1

// Capability is one thing a backend can serve.
type Capability string

// The capabilities a backend may declare in Describe.
const (
	CapChat        Capability = "chat"        // POST /v1/chat/completions
	CapCompletions Capability = "completions" // POST /v1/completions
	CapResponses   Capability = "responses"   // POST /v1/responses, natively (else the router translates to chat)
	CapEmbeddings  Capability = "embeddings"  // POST /v1/embeddings
	CapTools       Capability = "tools"       // tool / function calls in chat
	CapStreaming   Capability = "streaming"   // stream: true
)

// Description is what a plugin says of itself.
type Description struct {
	// Name is the plugin's short name, e.g. "ollama".
	Name string
	// Version is the plugin's own version.
	Version string
	// Capabilities lists what the backend serves.
	Capabilities []Capability
}

// Has reports whether d declares capability c.
func (d Description) Has(c Capability) bool {
	for _, x := range d.Capabilities {
		if x == c {
			return true
		}
	}
	return false
}

// Config is a backend's route, sent once after launch (and again when the
// route changes). Credential is the only secret a plugin ever receives: the
// plugin process gets no environment from the host.
type Config struct {
	// Endpoint is the backend's base URL, e.g. "https://integrate.api.nvidia.com/v1".
	Endpoint string
	// Model is the backend's model name that requests are rewritten to.
	Model string
	// Credential is the API key (empty for keyless local backends).
	Credential string
	// TimeoutSecs is the idle-gap timeout: the longest wait for the next
	// byte from the backend (0: the plugin's default). Never a total timeout.
	TimeoutSecs int
	// Options are backend-specific settings from the blueprint profile.
	Options map[string]string
}

// Model is one entry of a backend's model list.
type Model struct {
	// ID is the model's name as the backend knows it.
	ID string
	// OwnedBy is the owner the backend reports, if any.
	OwnedBy string
	// Created is the creation time in Unix seconds, if known.
	Created int64
}

// Request is one inference call. Body is the OpenAI-shaped JSON request the
// agent sent, with "model" already rewritten to the route's model and the
// caller's credentials stripped.
type Request struct {
	// Model is the model the body names (after rewriting).
	Model string
	// Stream is the body's "stream" flag.
	Stream bool
	// Body is the JSON request body.
	Body []byte
}

// Usage is token accounting a backend reports (zero when it reports none).
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
}

// Chunk is one piece of a response. For a streamed request each Chunk's
// Data is one server-sent event's data payload (an OpenAI JSON chunk, without
// "data: " and without the final "[DONE]", which the router writes). For a
// non-streamed request there is exactly one Chunk whose Data is the whole
// JSON response body.
type Chunk struct {
	// Data is the JSON payload.
	Data []byte
	// Usage is set on the chunk that carries token counts, if any.
	Usage *Usage
}

// StreamWriter receives a response's chunks in order. Send returns an error
// when the caller went away; the backend should then stop and return it.
type StreamWriter interface {
	Send(Chunk) error
}

// Backend is what a plugin implements. Every method may be called
// concurrently. Methods a backend does not declare in Describe return an
// *Error with Status 501.
type Backend interface {
	// Describe reports the plugin's name, version and capabilities.
	Describe(ctx context.Context) (Description, error)
	// Configure sets the route; it is called before any request.
	Configure(ctx context.Context, cfg Config) error
	// Health checks that the backend answers (and the credential is accepted where that can be checked cheaply).
	Health(ctx context.Context) error
	// ListModels lists the backend's models.
	ListModels(ctx context.Context) ([]Model, error)
	// ChatCompletions serves POST /v1/chat/completions.
	ChatCompletions(ctx context.Context, req *Request, w StreamWriter) error
	// Completions serves POST /v1/completions.
	Completions(ctx context.Context, req *Request, w StreamWriter) error
	// Responses serves POST /v1/responses for backends that have it natively.
	Responses(ctx context.Context, req *Request, w StreamWriter) error
	// Embeddings serves POST /v1/embeddings (never streamed).
	Embeddings(ctx context.Context, req *Request) (*Chunk, error)
}

// Error is a backend failure the router turns into an HTTP status and an
// OpenAI-shaped error body. Anything else a Backend returns becomes a 502.
type Error struct {
	// Status is the HTTP status to answer (e.g. 400, 401, 404, 429, 501, 502, 504).
	Status int
	// Type is the OpenAI error type, e.g. "invalid_request_error".
	Type string
	// Message says what went wrong; it reaches the agent, so it never holds the credential.
	Message string
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message) }

// Unimplemented is the error for a capability a backend lacks.
func Unimplemented(what string) *Error {
	return &Error{Status: 501, Type: "not_implemented", Message: what + " is not supported by this backend"}
}
