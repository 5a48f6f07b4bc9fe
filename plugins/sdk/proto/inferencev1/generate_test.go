package inferencev1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// protocLine is the generated header's protoc version line, the one part
// allowed to differ between machines.
var protocLine = regexp.MustCompile(`(?m)^//\s+protoc\s+v[0-9.]+\n`)

// TestGeneratedProtoCurrent regenerates schema/inference.proto into a
// temporary directory, as `make generate` does, and fails when the checked-in
// code differs: the .proto was edited without regenerating.
func TestGeneratedProtoCurrent(t *testing.T) {
	tools := filepath.Join(os.Getenv("HOME"), ".cache", "nemoclaw-protoc-bin")
	t.Setenv("PATH", tools+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, tool := range []string{"protoc", "protoc-gen-go", "protoc-gen-go-grpc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, tool+" is not installed; `make proto-tools` installs it")
		}
	}
	out := t.TempDir()
	cmd := exec.Command("protoc", "-I", "../../../../schema",
		"--go_out="+out, "--go_opt=module=github.com/nemoclaw/nemoclaw",
		"--go-grpc_out="+out, "--go-grpc_opt=module=github.com/nemoclaw/nemoclaw",
		"../../../../schema/inference.proto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	for _, f := range []string{"inference.pb.go", "inference_grpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(out, "plugins/sdk/proto/inferencev1", f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(protocLine.ReplaceAll(got, nil), protocLine.ReplaceAll(want, nil)) {
			t.Errorf("%s is stale: schema/inference.proto changed; run `make generate` and commit the result", f)
		}
	}
}
