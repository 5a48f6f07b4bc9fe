package ollama

import (
	"bytes"
	"strings"
	"syscall"
	"testing"
)

// BenchmarkChatStreamRelay measures the translation cost per streamed token:
// one Ollama NDJSON line in, one chat.completion.chunk payload out (the
// router's goal is ≤ 20 µs added per chunk, this included).
func BenchmarkChatStreamRelay(b *testing.B) {
	const lines = 1000
	var in strings.Builder
	for i := 0; i < lines; i++ {
		in.WriteString(`{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":" token"},"done":false}` + "\n")
	}
	in.WriteString(`{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"prompt_eval_count":26,"eval_count":1000}` + "\n")
	data := []byte(in.String())
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := streamChat(newNDJSON(bytes.NewReader(data), "/api/chat"), "m", discard{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/chunk")
	// CPU time, which other processes on a shared machine disturb far less
	// than wall time.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*lines), "cpu-ns/chunk")
}

// cpuTime is this process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
