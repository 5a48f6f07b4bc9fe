// Command pull benchmarks nemoclaw's blueprint pull + verify from a
// loopback registry, cold and warm cache, against a plain oras-go copy of
// the same artifact in the same run, and prints the ratios.
//
// The registry is Debian's docker-registry (distribution 2.8) when it is
// installed, else go-containerregistry's in-process registry.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/nemoclaw/nemoclaw/runner/registry"
	"github.com/nemoclaw/nemoclaw/runner/signing"
)

func main() {
	cold := flag.Int("cold", 30, "cold-cache iterations")
	warm := flag.Int("warm", 200, "warm-cache iterations")
	bpDir := flag.String("blueprint", "runner/registry/testdata/blueprint", "blueprint directory to push")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*cold, *warm, *bpDir); err != nil {
		pprof.StopCPUProfile()
		log.Fatal(err)
	}
}

func run(coldN, warmN int, bpDir string) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "nemoclaw-bench-pull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	host, kind, stop, err := startRegistry(work)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("registry: %s on %s\n", kind, host)

	// Publish a signed blueprint.
	keyPrefix := filepath.Join(work, "key")
	pass := []byte("bench")
	if _, _, err := signing.GenerateKey(keyPrefix, pass); err != nil {
		return err
	}
	kp, err := signing.LoadPrivateKey(keyPrefix+".key", pass)
	if err != nil {
		return err
	}
	pub, err := registry.New(registry.Config{Home: filepath.Join(work, "publisher")})
	if err != nil {
		return err
	}
	repo := host + "/bench/bp"
	p, err := pub.Push(ctx, registry.PushOptions{Dir: bpDir, Ref: repo})
	if err != nil {
		return err
	}
	if _, err := pub.Sign(ctx, registry.SignOptions{Ref: repo + "@" + p.Digest, Key: kp}); err != nil {
		return err
	}
	ref := repo + ":" + p.Version
	fmt.Printf("artifact: %s@%s, layer %d bytes, signed\n", repo, p.Digest, p.Size)
	oneOff := registry.Verification{OneOff: &signing.RequirementSpec{Keys: []string{keyPrefix + ".pub"}}}

	// Baseline: a plain oras-go copy of the same tag into a fresh OCI layout
	// (resolve, manifest, layer; no signature, no unpack, no lock).
	baseline, err := measure(coldN, func(i int) error {
		r, err := remote.NewRepository(repo)
		if err != nil {
			return err
		}
		r.PlainHTTP = true
		// A fresh transport per pull, as a new process has (nemoclaw's
		// client below gets one too): no pooled connections carried over.
		r.Client = &auth.Client{Client: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, Cache: auth.NewCache()}
		st, err := oci.New(filepath.Join(work, fmt.Sprintf("oras-%d", i)))
		if err != nil {
			return err
		}
		_, err = oras.Copy(ctx, r, p.Version, st, p.Version, oras.DefaultCopyOptions)
		return err
	})
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	// Cold: a fresh $NEMOCLAW_HOME and lock every time: resolve the tag,
	// fetch and check manifest, layer, signature referrers, verify the
	// signature, commit to the cache, unpack, write the lock.
	coldT, err := measure(coldN, func(i int) error {
		c, err := registry.New(registry.Config{Home: filepath.Join(work, fmt.Sprintf("cold-%d", i))})
		if err != nil {
			return err
		}
		_, err = c.Fetch(ctx, registry.FetchOptions{Ref: ref, LockPath: filepath.Join(work, fmt.Sprintf("cold-%d.lock", i)), Verification: oneOff})
		return err
	})
	if err != nil {
		return fmt.Errorf("cold: %w", err)
	}
	// Warm: pinned in the lock and cached: no network; re-hash manifest,
	// layer and bundle, verify the signature, check the unpacked tree.
	home, lock := filepath.Join(work, "warm"), filepath.Join(work, "warm.lock")
	c, err := registry.New(registry.Config{Home: home})
	if err != nil {
		return err
	}
	if _, err := c.Fetch(ctx, registry.FetchOptions{Ref: ref, LockPath: lock, Verification: oneOff}); err != nil {
		return err
	}
	warmT, err := measure(warmN, func(int) error {
		c, err := registry.New(registry.Config{Home: home})
		if err != nil {
			return err
		}
		f, err := c.Fetch(ctx, registry.FetchOptions{Ref: ref, LockPath: lock, Verification: oneOff})
		if err == nil && !f.FromCache {
			err = fmt.Errorf("warm pull used the network")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("warm: %w", err)
	}
	fmt.Printf("\n%-44s %10s %10s\n", "case", "median", "p90")
	row := func(name string, s stats) { fmt.Printf("%-44s %10s %10s\n", name, ms(s.median), ms(s.p90)) }
	row(fmt.Sprintf("baseline oras.Copy (cold, n=%d)", coldN), baseline)
	row(fmt.Sprintf("nemoclaw pull+verify cold (n=%d)", coldN), coldT)
	row(fmt.Sprintf("nemoclaw pull+verify warm, pinned (n=%d)", warmN), warmT)

	// The same warm pull through the CLI, process start included.
	if bin := os.Getenv("NEMOCLAW_BIN_DIR"); bin != "" {
		nc := filepath.Join(bin, "nemoclaw")
		cli, err := measure(warmN/4+1, func(int) error {
			cmd := exec.Command(nc, "blueprint", "pull", ref, "--lock", lock, "--key", keyPrefix+".pub")
			cmd.Env = append(os.Environ(), "NEMOCLAW_HOME="+home)
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("cli warm: %w", err)
		}
		row(fmt.Sprintf("nemoclaw CLI warm pull, process incl. (n=%d)", warmN/4+1), cli)
	}
	fmt.Printf("\nratio cold / baseline (median): %.2fx   (goal <= 2.0x)\n", float64(coldT.median)/float64(baseline.median))
	fmt.Printf("warm pinned resolve+verify (median): %s   (goal <= 20 ms; %.1fx under it)\n", ms(warmT.median), float64(20*time.Millisecond)/float64(warmT.median))
	return nil
}

type stats struct{ median, p90 time.Duration }

// measure runs f n times after one warm-up run and returns the median and
// 90th percentile.
func measure(n int, f func(i int) error) (stats, error) {
	if err := f(-1); err != nil {
		return stats{}, err
	}
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := f(i); err != nil {
			return stats{}, err
		}
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return stats{median: ds[len(ds)/2], p90: ds[len(ds)*9/10]}, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// startRegistry starts docker-registry on a free loopback port, or the
// in-process registry when it is not installed.
func startRegistry(work string) (host, kind string, stop func(), err error) {
	if bin, lerr := exec.LookPath("docker-registry"); lerr == nil {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", nil, err
		}
		addr := l.Addr().String()
		l.Close()
		cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(work, "storage"), addr)
		cfgPath := filepath.Join(work, "registry.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return "", "", nil, err
		}
		cmd := exec.Command(bin, "serve", cfgPath)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			return "", "", nil, err
		}
		stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
				resp.Body.Close()
				return addr, "docker-registry (distribution 2.8, separate process)", stop, nil
			}
		}
		stop()
		return "", "", nil, fmt.Errorf("docker-registry did not start on %s", addr)
	}
	srv := httptest.NewServer(ggcr.New(ggcr.WithReferrersSupport(true), ggcr.Logger(log.New(io.Discard, "", 0))))
	return strings.TrimPrefix(srv.URL, "http://"), "go-containerregistry (in process)", srv.Close, nil
}
