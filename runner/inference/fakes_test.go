package inference

import (
	"context"
	"errors"
	"fmt"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/inference/inferencetest"
)

// providerFunc adapts a function to Provider.
type providerFunc func(context.Context, Route) (sdk.Backend, error)

func (f providerFunc) Backend(ctx context.Context, r Route) (sdk.Backend, error) { return f(ctx, r) }

// mapProvider hands each route the backend registered for its profile.
type mapProvider map[string]sdk.Backend

func (p mapProvider) Backend(_ context.Context, r Route) (sdk.Backend, error) {
	b, ok := p[r.Profile]
	if !ok {
		return nil, fmt.Errorf("no backend for %s", r.Profile)
	}
	if err := b.Configure(context.Background(), r.Config); err != nil {
		return nil, err
	}
	return b, nil
}

// scriptBackend is a backend whose chat answer is a script: it sends the
// given chunks, then blocks, fails or returns as told.
type scriptBackend struct {
	inferencetest.HTTPBackend
	chunks []string
	// then: "" returns nil, "error" returns an error, "block" waits for
	// the context, "hang" ignores it (until release closes).
	then    string
	release chan struct{}
	embed   *sdk.Chunk
}

func (b *scriptBackend) ChatCompletions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	for _, c := range b.chunks {
		if err := w.Send(sdk.Chunk{Data: []byte(c)}); err != nil {
			return err
		}
	}
	switch b.then {
	case "error":
		return errors.New("connection reset by the backend")
	case "leak":
		return &sdk.Error{Status: 401, Type: "authentication_error", Message: "key " + testRouteKey + " was refused"}
	case "block":
		<-ctx.Done()
		return ctx.Err()
	case "gate":
		// The next chunk only after the client has read the first: a
		// router that buffered would never get it.
		select {
		case <-b.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return w.Send(sdk.Chunk{Data: []byte(okChunk)})
	case "hang":
		<-b.release
		return w.Send(sdk.Chunk{Data: []byte(`{"late":true}`)})
	}
	return nil
}

func (b *scriptBackend) Embeddings(context.Context, *sdk.Request) (*sdk.Chunk, error) {
	return b.embed, nil
}
