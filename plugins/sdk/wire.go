package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/nemoclaw/nemoclaw/plugins/sdk/proto/inferencev1"
)

// This file is the wire between a Backend and the host: the go-plugin
// handshake and plugin set, the gRPC server that exposes a Backend, and the
// client that turns the gRPC service back into a Backend. Plugin authors need
// none of it (Serve uses it); nemoclaw's plugin host and sdktest do.

// PluginKey is the name the backend is dispensed under in go-plugin's plugin set.
const PluginKey = "backend"

// MaxMessageBytes bounds one gRPC message each way: a request body, a
// non-streamed response, one stream chunk, an embeddings answer. gRPC's
// default (4 MiB received, unbounded sent) is set explicitly so that neither
// side relies on a default that may change.
const MaxMessageBytes = 32 << 20

// windowBytes is the HTTP/2 flow-control window, fixed: a fixed window turns
// off gRPC's bandwidth estimator, which pings the peer on received data —
// on a local socket the pings only add work to every call.
const windowBytes = 4 << 20

// Handshake is the go-plugin handshake: the magic cookie keeps a plugin
// binary from running as a program by accident, and ProtocolVersion makes a
// host and a plugin that disagree refuse each other.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   "NEMOCLAW_INFERENCE_PLUGIN",
		MagicCookieValue: "2f6c0e1b-inference-backend",
	}
}

// PluginSet is the go-plugin plugin set serving impl (nil on the host side,
// which only dispenses).
func PluginSet(impl Backend) plugin.PluginSet {
	return plugin.PluginSet{PluginKey: &grpcPlugin{impl: impl}}
}

// ServerOptions are the gRPC server options every plugin serves with.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.InitialWindowSize(windowBytes), grpc.InitialConnWindowSize(windowBytes)}
}

// DialOptions are the gRPC dial options every host connects with.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithInitialWindowSize(windowBytes), grpc.WithInitialConnWindowSize(windowBytes)}
}

// ClientConfig is the go-plugin client configuration a host launches cmd
// with: gRPC only (nil would mean net/rpc), AutoMTLS (a fresh certificate
// pair per launch, so nothing else on the host can talk to the plugin's
// socket), SkipHostEnv (the plugin gets no environment from the host: its
// only secret is the credential Configure sends), and the message limits.
//
// SecureConfig is deliberately left nil: go-plugin would hash the file at
// cmd.Path again, by name, before starting it, which proves nothing about
// the bytes executed. The host verifies the checksum on the very file it
// executes instead (runner/inference).
func ClientConfig(cmd *exec.Cmd, logger hclog.Logger) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig:  Handshake(),
		Plugins:          PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		GRPCDialOptions:  DialOptions(),
		Logger:           logger,
	}
}

// RegisterServer exposes b as the inference Backend service on s.
func RegisterServer(s *grpc.Server, b Backend) {
	pb.RegisterBackendServer(s, &server{b: b})
}

// NewClient returns the Backend served on cc. Its errors are a backend's
// *Error, the caller's context error, or one wrapping ErrTransport.
func NewClient(cc grpc.ClientConnInterface) Backend {
	return &client{c: pb.NewBackendClient(cc)}
}

// ErrTransport marks a failure of the connection to the plugin (it exited,
// crashed or broke the protocol), as opposed to a failure the backend reported.
var ErrTransport = errors.New("plugin connection failed")

type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Backend
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterServer(s, p.impl)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return NewClient(cc), nil
}

// toPB turns a backend's error into the wire's: an *Error as it is,
// anything else as a 502 that keeps the message.
func toPB(err error) *pb.Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return &pb.Error{Status: int32(e.Status), Type: e.Type, Message: e.Message}
	}
	return &pb.Error{Status: 502, Type: "backend_error", Message: err.Error()}
}

func fromPB(e *pb.Error) error {
	if e == nil {
		return nil
	}
	return &Error{Status: int(e.Status), Type: e.Type, Message: e.Message}
}

func usageToPB(u *Usage) *pb.Usage {
	if u == nil {
		return nil
	}
	return &pb.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

func usageFromPB(u *pb.Usage) *Usage {
	if u == nil {
		return nil
	}
	return &Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

// server adapts a Backend to the generated service.
type server struct {
	pb.UnimplementedBackendServer
	b Backend
}

func (s *server) Describe(ctx context.Context, _ *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	d, err := s.b.Describe(ctx)
	caps := make([]string, len(d.Capabilities))
	for i, c := range d.Capabilities {
		caps[i] = string(c)
	}
	return &pb.DescribeResponse{Name: d.Name, Version: d.Version, Capabilities: caps, ProtocolVersion: ProtocolVersion, Error: toPB(err)}, nil
}

func (s *server) Configure(ctx context.Context, r *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	err := s.b.Configure(ctx, Config{Endpoint: r.Endpoint, Model: r.Model, Credential: r.Credential, TimeoutSecs: int(r.TimeoutSecs), Options: r.Options})
	return &pb.ConfigureResponse{Error: toPB(err)}, nil
}

func (s *server) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	return &pb.HealthResponse{Error: toPB(s.b.Health(ctx))}, nil
}

func (s *server) ListModels(ctx context.Context, _ *pb.ListModelsRequest) (*pb.ListModelsResponse, error) {
	ms, err := s.b.ListModels(ctx)
	out := &pb.ListModelsResponse{Error: toPB(err), Models: make([]*pb.Model, len(ms))}
	for i, m := range ms {
		out.Models[i] = &pb.Model{Id: m.ID, OwnedBy: m.OwnedBy, Created: m.Created}
	}
	return out, nil
}

func (s *server) ChatCompletions(r *pb.InferenceRequest, st pb.Backend_ChatCompletionsServer) error {
	return serveStream(r, st, s.b.ChatCompletions)
}

func (s *server) Completions(r *pb.InferenceRequest, st pb.Backend_CompletionsServer) error {
	return serveStream(r, st, s.b.Completions)
}

func (s *server) Responses(r *pb.InferenceRequest, st pb.Backend_ResponsesServer) error {
	return serveStream(r, st, s.b.Responses)
}

func (s *server) Embeddings(ctx context.Context, r *pb.InferenceRequest) (*pb.EmbeddingsResponse, error) {
	c, err := s.b.Embeddings(ctx, &Request{Model: r.Model, Stream: r.Stream, Body: r.Body})
	if err != nil {
		return &pb.EmbeddingsResponse{Error: toPB(err)}, nil
	}
	if c == nil {
		return &pb.EmbeddingsResponse{Error: toPB(errors.New("backend returned no embeddings response"))}, nil
	}
	return &pb.EmbeddingsResponse{Data: c.Data, Usage: usageToPB(c.Usage)}, nil
}

type chunkSender struct {
	st grpc.ServerStreamingServer[pb.Chunk]
}

func (w chunkSender) Send(c Chunk) error {
	return w.st.Send(&pb.Chunk{Data: c.Data, Usage: usageToPB(c.Usage)})
}

func serveStream(r *pb.InferenceRequest, st grpc.ServerStreamingServer[pb.Chunk], fn func(context.Context, *Request, StreamWriter) error) error {
	ctx := st.Context()
	err := fn(ctx, &Request{Model: r.Model, Stream: r.Stream, Body: r.Body}, chunkSender{st})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// The host went away; there is no one to tell.
		return status.FromContextError(ctx.Err()).Err()
	}
	// A backend failure is the stream's last chunk, in-band.
	return st.Send(&pb.Chunk{Error: toPB(err)})
}

// client adapts the generated client to a Backend.
type client struct {
	c pb.BackendClient
}

// transportErr classifies a gRPC call's error: the caller's own
// cancellation comes back as the context's error, a message over the size
// limit as a 413, the rest as ErrTransport.
func transportErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.ResourceExhausted {
		// A message over MaxMessageBytes: the request's fault (or the
		// answer's), not the plugin's; the connection is fine.
		return &Error{Status: 413, Type: "invalid_request_error", Message: fmt.Sprintf("%s: the request or its answer exceeds the plugin protocol's %d MiB message limit", what, MaxMessageBytes>>20)}
	}
	return fmt.Errorf("%w: %s: %v", ErrTransport, what, err)
}

func (c *client) Describe(ctx context.Context) (Description, error) {
	r, err := c.c.Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		return Description{}, transportErr(ctx, "describe", err)
	}
	d := Description{Name: r.Name, Version: r.Version, Capabilities: make([]Capability, len(r.Capabilities))}
	for i, s := range r.Capabilities {
		d.Capabilities[i] = Capability(s)
	}
	return d, fromPB(r.Error)
}

func (c *client) Configure(ctx context.Context, cfg Config) error {
	r, err := c.c.Configure(ctx, &pb.ConfigureRequest{Endpoint: cfg.Endpoint, Model: cfg.Model, Credential: cfg.Credential, TimeoutSecs: int32(cfg.TimeoutSecs), Options: cfg.Options})
	if err != nil {
		return transportErr(ctx, "configure", err)
	}
	return fromPB(r.Error)
}

func (c *client) Health(ctx context.Context) error {
	r, err := c.c.Health(ctx, &pb.HealthRequest{})
	if err != nil {
		return transportErr(ctx, "health", err)
	}
	return fromPB(r.Error)
}

func (c *client) ListModels(ctx context.Context) ([]Model, error) {
	r, err := c.c.ListModels(ctx, &pb.ListModelsRequest{})
	if err != nil {
		return nil, transportErr(ctx, "list models", err)
	}
	if r.Error != nil {
		return nil, fromPB(r.Error)
	}
	ms := make([]Model, len(r.Models))
	for i, m := range r.Models {
		ms[i] = Model{ID: m.Id, OwnedBy: m.OwnedBy, Created: m.Created}
	}
	return ms, nil
}

func (c *client) ChatCompletions(ctx context.Context, req *Request, w StreamWriter) error {
	return c.stream(ctx, "chat completions", req, w, c.c.ChatCompletions)
}

func (c *client) Completions(ctx context.Context, req *Request, w StreamWriter) error {
	return c.stream(ctx, "completions", req, w, c.c.Completions)
}

func (c *client) Responses(ctx context.Context, req *Request, w StreamWriter) error {
	return c.stream(ctx, "responses", req, w, c.c.Responses)
}

func (c *client) stream(ctx context.Context, what string, req *Request, w StreamWriter,
	call func(context.Context, *pb.InferenceRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[pb.Chunk], error)) error {
	// Cancelling ctx on return ends the gRPC stream when w refused a chunk.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := call(ctx, &pb.InferenceRequest{Model: req.Model, Stream: req.Stream, Body: req.Body})
	if err != nil {
		return transportErr(ctx, what, err)
	}
	for {
		ch, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return transportErr(ctx, what, err)
		}
		if ch.Error != nil {
			return fromPB(ch.Error)
		}
		if err := w.Send(Chunk{Data: ch.Data, Usage: usageFromPB(ch.Usage)}); err != nil {
			return err
		}
	}
}

func (c *client) Embeddings(ctx context.Context, req *Request) (*Chunk, error) {
	r, err := c.c.Embeddings(ctx, &pb.InferenceRequest{Model: req.Model, Stream: req.Stream, Body: req.Body})
	if err != nil {
		return nil, transportErr(ctx, "embeddings", err)
	}
	if r.Error != nil {
		return nil, fromPB(r.Error)
	}
	return &Chunk{Data: r.Data, Usage: usageFromPB(r.Usage)}, nil
}
