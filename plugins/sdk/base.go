package sdk

import "context"

// UnimplementedBackend is embedded by a backend that serves only some of
// Backend's methods: every request method answers 501 (Unimplemented),
// Configure keeps nothing and Health reports healthy. The embedding type
// still writes Describe, so that it names itself and what it serves.
type UnimplementedBackend struct{}

// Configure implements Backend; it accepts any route.
func (UnimplementedBackend) Configure(context.Context, Config) error { return nil }

// Health implements Backend; it reports healthy.
func (UnimplementedBackend) Health(context.Context) error { return nil }

// ListModels implements Backend with 501.
func (UnimplementedBackend) ListModels(context.Context) ([]Model, error) {
	return nil, Unimplemented("listing models")
}

// ChatCompletions implements Backend with 501.
func (UnimplementedBackend) ChatCompletions(context.Context, *Request, StreamWriter) error {
	return Unimplemented("chat completions")
}

// Completions implements Backend with 501.
func (UnimplementedBackend) Completions(context.Context, *Request, StreamWriter) error {
	return Unimplemented("completions")
}

// Responses implements Backend with 501.
func (UnimplementedBackend) Responses(context.Context, *Request, StreamWriter) error {
	return Unimplemented("responses")
}

// Embeddings implements Backend with 501.
func (UnimplementedBackend) Embeddings(context.Context, *Request) (*Chunk, error) {
	return nil, Unimplemented("embeddings")
}
