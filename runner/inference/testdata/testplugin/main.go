// Command testplugin is the plugin the host tests launch: it reports its
// pid and environment, streams as many chunks as asked, and can hold a
// stream open until it is killed.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

type testPlugin struct {
	sdk.UnimplementedBackend
	cfg sdk.Config
}

func (p *testPlugin) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{Name: "testplugin", Version: "0.0.1", Capabilities: []sdk.Capability{sdk.CapChat, sdk.CapStreaming}}, nil
}

// Configure logs through sdk.Logger, then writes a line go-plugin's own
// stderr parser would panic on, which the host must survive.
func (p *testPlugin) Configure(_ context.Context, c sdk.Config) error {
	p.cfg = c
	sdk.Logger().Warn("configured", "model", c.Model)
	fmt.Fprintln(os.NewFile(2, "stderr"), `{"@message": 1, "@level": ["x"], "@timestamp": 2}`)
	return nil
}

// ListModels reports "pid=N", "credential=…" and one "env=NAME" per variable.
func (p *testPlugin) ListModels(context.Context) ([]sdk.Model, error) {
	ms := []sdk.Model{{ID: fmt.Sprintf("pid=%d", os.Getpid())}, {ID: "credential=" + p.cfg.Credential}}
	for _, kv := range os.Environ() {
		ms = append(ms, sdk.Model{ID: "env=" + strings.SplitN(kv, "=", 2)[0]})
	}
	return ms, nil
}

// ChatCompletions streams {"n": i} for i < chunks, then holds the stream
// open until the host cancels it when hold is set.
func (p *testPlugin) ChatCompletions(ctx context.Context, r *sdk.Request, w sdk.StreamWriter) error {
	var in struct {
		Chunks int  `json:"chunks"`
		Hold   bool `json:"hold"`
	}
	if err := json.Unmarshal(r.Body, &in); err != nil {
		return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: err.Error()}
	}
	for i := 0; i < in.Chunks; i++ {
		if err := w.Send(sdk.Chunk{Data: fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
			return err
		}
	}
	if in.Hold {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func main() { sdk.Serve(&testPlugin{}) }
