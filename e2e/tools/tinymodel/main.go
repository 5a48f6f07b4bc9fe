//go:build ignore

// Command tinymodel writes a tiny random-weight llama model in GGUF with
// Ollama's own writer (fs/ggml.WriteGGUF): 2 layers, hidden size 64, a
// sentencepiece vocabulary of a few hundred tokens, f32 weights, about half a
// megabyte. Its output is gibberish, but every Ollama endpoint answers for
// real and in milliseconds, which is what the inference plugin's real-server
// test needs when no weights can be downloaded.
//
// It imports github.com/ollama/ollama, so it is not part of nemoclaw's
// module (hence the ignore tag): e2e/tools/ollama.sh copies it into a module
// of its own in the e2e tool cache and builds it there.
//
//	go run main.go OUT.gguf
package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"

	"github.com/ollama/ollama/fs/ggml"
)

const (
	hidden  = 64
	ffn     = 128
	layers  = 2
	heads   = 4
	ctxLen  = 512
	typeF32 = 0 // ggml's GGML_TYPE_F32
)

// Token types as llama.cpp numbers them.
const (
	tokNormal  = 1
	tokUnknown = 2
	tokControl = 3
	tokByte    = 6
)

// f32 is a tensor's data: values written little-endian.
type f32 []float32

func (t f32) WriteTo(w io.Writer) (int64, error) {
	b := make([]byte, 4*len(t))
	for i, v := range t {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	n, err := w.Write(b)
	return int64(n), err
}

func vocabulary() (tokens []string, scores []float32, types []int32) {
	seen := map[string]bool{}
	add := func(s string, typ int32) {
		if seen[s] {
			// llama.cpp aborts the whole server on a duplicate token.
			panic("duplicate token " + s)
		}
		seen[s] = true
		tokens = append(tokens, s)
		scores = append(scores, -float32(len(tokens)))
		types = append(types, typ)
	}
	add("<unk>", tokUnknown)
	add("<s>", tokControl)
	add("</s>", tokControl)
	// Byte fallback: any text tokenizes, whatever its characters.
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b), tokByte)
	}
	add("\u2581", tokNormal)
	for c := 'a'; c <= 'z'; c++ {
		add(string(c), tokNormal)
		add("\u2581"+string(c), tokNormal)
	}
	for _, w := range []string{"the", "hello", "world", "model", "tiny", "say", "is", "of", "and"} {
		add("\u2581"+w, tokNormal)
	}
	return tokens, scores, types
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tinymodel OUT.gguf")
		os.Exit(2)
	}
	tokens, scores, types := vocabulary()
	vocab := uint64(len(tokens))
	rng := rand.New(rand.NewPCG(1, 2)) // fixed seed: the same file every time
	random := func(n uint64) f32 {
		t := make(f32, n)
		for i := range t {
			t[i] = float32(rng.NormFloat64() * 0.02)
		}
		return t
	}
	ones := func(n uint64) f32 {
		t := make(f32, n)
		for i := range t {
			t[i] = 1
		}
		return t
	}
	tensor := func(name string, data f32, shape ...uint64) *ggml.Tensor {
		return &ggml.Tensor{Name: name, Kind: typeF32, Shape: shape, WriterTo: data}
	}
	ts := []*ggml.Tensor{
		tensor("token_embd.weight", random(hidden*vocab), hidden, vocab),
		tensor("output_norm.weight", ones(hidden), hidden),
	}
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			tensor(p+"attn_norm.weight", ones(hidden), hidden),
			tensor(p+"attn_q.weight", random(hidden*hidden), hidden, hidden),
			tensor(p+"attn_k.weight", random(hidden*hidden), hidden, hidden),
			tensor(p+"attn_v.weight", random(hidden*hidden), hidden, hidden),
			tensor(p+"attn_output.weight", random(hidden*hidden), hidden, hidden),
			tensor(p+"ffn_norm.weight", ones(hidden), hidden),
			tensor(p+"ffn_gate.weight", random(hidden*ffn), hidden, ffn),
			tensor(p+"ffn_up.weight", random(hidden*ffn), hidden, ffn),
			tensor(p+"ffn_down.weight", random(ffn*hidden), ffn, hidden),
		)
	}
	kv := ggml.KV{
		"general.architecture":             "llama",
		"general.name":                     "nemoclaw-tiny-llama",
		"general.file_type":                uint32(0), // all f32
		"context_length":                   uint32(ctxLen),
		"embedding_length":                 uint32(hidden),
		"block_count":                      uint32(layers),
		"feed_forward_length":              uint32(ffn),
		"attention.head_count":             uint32(heads),
		"attention.head_count_kv":          uint32(heads),
		"attention.layer_norm_rms_epsilon": float32(1e-5),
		"rope.dimension_count":             uint32(hidden / heads),
		"rope.freq_base":                   float32(10000),
		"vocab_size":                       uint32(vocab),
		"tokenizer.ggml.model":             "llama",
		"tokenizer.ggml.tokens":            tokens,
		"tokenizer.ggml.scores":            scores,
		"tokenizer.ggml.token_type":        types,
		"tokenizer.ggml.unknown_token_id":  uint32(0),
		"tokenizer.ggml.bos_token_id":      uint32(1),
		"tokenizer.ggml.eos_token_id":      uint32(2),
		"tokenizer.ggml.add_bos_token":     true,
		"tokenizer.ggml.add_eos_token":     false,
	}
	f, err := os.Create(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "tinymodel:", err)
		os.Exit(1)
	}
	if err := ggml.WriteGGUF(f, kv, ts); err != nil {
		fmt.Fprintln(os.Stderr, "tinymodel: write:", err)
		os.Exit(1)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "tinymodel: close:", err)
		os.Exit(1)
	}
}
