package egress

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// BenchmarkProxyHTTP1 measures one absolute-form keep-alive request through
// the proxy (policy, audit and forwarding), for profiling the HTTP/1.1 path.
func BenchmarkProxyHTTP1(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}))
	defer up.Close()
	port := up.Listener.Addr().(*net.TCPAddr).Port
	h := newHarness(b, plainPolicy(port), nil)
	tr := &http.Transport{Proxy: http.ProxyURL(h.proxyURL), MaxIdleConnsPerHost: 4}
	c := &http.Client{Transport: tr}
	target, _ := url.Parse(plainURL(port, "/x"))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.Get(target.String())
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
