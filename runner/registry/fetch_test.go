package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// published is a registry holding signed versions of one blueprint.
type published struct {
	srv      *tamperServer
	repo     string
	keyDir   string
	kp       *signing.Keypair
	pub      string
	versions map[string]*Pushed
}

func publish(t *testing.T, versions ...string) *published {
	t.Helper()
	p := &published{srv: newRegistry(t), keyDir: t.TempDir(), versions: map[string]*Pushed{}}
	p.repo = p.srv.host() + "/team/bp"
	prefix, kp := keyPair(t, p.keyDir, "publisher")
	p.kp, p.pub = kp, prefix+".pub"
	pusher := newClient(t)
	for _, v := range versions {
		p.versions[v] = push(t, pusher, blueprintDir(t, v, ""), p.repo, kp)
	}
	return p
}

// consumer is a fresh home that trusts the publisher's key, with a lock
// file in its own directory.
func (p *published) consumer(t *testing.T) (*Client, string) {
	t.Helper()
	c := newClient(t)
	trustKey(t, c, p.srv.host()+"/team/*", p.pub)
	return c, filepath.Join(t.TempDir(), DefaultLockFile)
}

func TestPullConstraints(t *testing.T) {
	t.Parallel()
	p := publish(t, "1.0.0", "1.2.0", "1.2.5", "1.3.0-rc.1", "1.3.0", "2.0.0")
	tests := []struct {
		name, ref, constraint, want string
	}{
		{"tag", p.repo + ":1.2.0", "", "1.2.0"},
		{"digest", p.repo + "@" + p.versions["1.0.0"].Digest, "", "1.0.0"},
		{"pessimistic minor", p.repo, "~> 1.2", "1.3.0"},
		{"pessimistic patch", p.repo, "~> 1.2.0", "1.2.5"},
		{"range", p.repo, ">= 1.2, < 2", "1.3.0"},
		{"prerelease named", p.repo, "1.3.0-rc.1", "1.3.0-rc.1"},
		{"no constraint", p.repo, "", "2.0.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, lockPath := p.consumer(t)
			f, err := c.Fetch(context.Background(), FetchOptions{Ref: tc.ref, Constraint: tc.constraint, LockPath: lockPath})
			if err != nil {
				t.Fatal(err)
			}
			if f.Version != tc.want || f.Digest != p.versions[tc.want].Digest || f.FromCache {
				t.Fatalf("got %+v, want version %s digest %s", f, tc.want, p.versions[tc.want].Digest)
			}
			if want := "key " + signing.Fingerprint(p.kp.Public()); f.Signer != want {
				t.Errorf("signer %q, want %q", f.Signer, want)
			}
			data, err := os.ReadFile(filepath.Join(f.Dir, "blueprint.yaml"))
			if err != nil || !bytes.Contains(data, []byte(`version: "`+tc.want+`"`)) {
				t.Errorf("unpacked blueprint.yaml: %v\n%s", err, data)
			}
			l, err := ReadLock(lockPath)
			if err != nil {
				t.Fatal(err)
			}
			e := l.Find(p.repo)
			if e == nil || e.Digest != f.Digest || e.Version != tc.want || e.Signer != f.Signer || e.Constraint != tc.constraint {
				t.Errorf("lock entry %+v", e)
			}
		})
	}
}

func TestPulledLockWorksOffline(t *testing.T) {
	t.Parallel()
	p := publish(t, "1.2.0", "1.2.5")
	c, lockPath := p.consumer(t)
	ctx := context.Background()
	first, err := c.Fetch(ctx, FetchOptions{Ref: p.repo, Constraint: "~> 1.2", LockPath: lockPath})
	if err != nil {
		t.Fatal(err)
	}
	// A newer match appears, then the registry goes down: the lock and the
	// cache answer, with no network.
	push(t, newClient(t), blueprintDir(t, "1.2.9", ""), p.repo, p.kp)
	p.srv.setDown(true)
	again, err := withHome(t, c).Fetch(ctx, FetchOptions{Ref: p.repo, Constraint: "~> 1.2", LockPath: lockPath})
	if err != nil {
		t.Fatal(err)
	}
	if !again.FromCache || again.Digest != first.Digest || again.Dir != first.Dir {
		t.Fatalf("offline pull %+v, want the cached %+v", again, first)
	}
	// blueprint update moves to the newest match once the registry is back.
	p.srv.setDown(false)
	up, err := c.Fetch(ctx, FetchOptions{Ref: p.repo, LockPath: lockPath, Update: true})
	if err != nil {
		t.Fatal(err)
	}
	if up.Version != "1.2.9" || up.PreviousDigest != first.Digest {
		t.Fatalf("update %+v, want 1.2.9 replacing %s", up, first.Digest)
	}
	l, _ := ReadLock(lockPath)
	if e := l.Find(p.repo); e.Version != "1.2.9" || e.Constraint != "~> 1.2" {
		t.Errorf("lock after update %+v", e)
	}
	cached, err := c.Cached(ctx)
	if err != nil || len(cached) != 2 || cached[0].Version != "1.2.5" || cached[1].Version != "1.2.9" {
		t.Errorf("cached %+v %v", cached, err)
	}
}

func TestRegistryDownEmptyCache(t *testing.T) {
	t.Parallel()
	p := publish(t, "1.0.0")
	c, lockPath := p.consumer(t)
	p.srv.setDown(true)
	_, err := c.Fetch(context.Background(), FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath})
	if err == nil || IsRefusal(err) || !strings.Contains(err.Error(), "503 Service Unavailable") {
		t.Fatalf("got %v, want a clear not-a-refusal error saying the registry answered 503", err)
	}
	if fileState(t, lockPath) != "<absent>" {
		t.Errorf("lock written")
	}
	// Nothing listening at all.
	dead := newRegistry(t)
	dead.Close()
	_, err = c.Fetch(context.Background(), FetchOptions{Ref: dead.host() + "/team/bp:1.0.0", Verification: Verification{InsecureSkipVerify: true}})
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "running and reachable?") {
		t.Fatalf("got %v, want connection refused and the question whether the registry runs", err)
	}
}

// attach pushes bundle as a signature referrer of subject.
func attach(t *testing.T, c *Client, repoRef string, subject ocispec.Descriptor, bundle []byte) {
	t.Helper()
	ctx := context.Background()
	ref, _ := ParseReference(repoRef)
	repo, err := c.repository(ref)
	if err != nil {
		t.Fatal(err)
	}
	bdesc := ocispec.Descriptor{MediaType: signing.BundleMediaType, Digest: digest.FromBytes(bundle), Size: int64(len(bundle))}
	if err := c.pushBlob(ctx, repo, ref, bdesc, bundle); err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, ArtifactType: signing.BundleMediaType,
		Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{bdesc}, Subject: &subject}
	mb, _ := json.Marshal(m)
	if err := repo.Manifests().Push(ctx, ocispec.Descriptor{MediaType: m.MediaType, ArtifactType: m.ArtifactType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}, bytes.NewReader(mb)); err != nil {
		t.Fatal(err)
	}
}

// manifestOf fetches the pushed manifest bytes and descriptor.
func manifestOf(t *testing.T, c *Client, repoRef, dgst string) ([]byte, ocispec.Descriptor) {
	t.Helper()
	ref, _ := ParseReference(repoRef)
	repo, _ := c.repository(ref)
	desc, rc, err := repo.Manifests().FetchReference(context.Background(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := readAllVerified(rc, desc.Digest, desc.Size)
	if err != nil {
		t.Fatal(err)
	}
	return mb, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactType, Digest: desc.Digest, Size: desc.Size}
}

func TestTamperRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// setup tampers with the registry (or the consumer's lock) and
		// returns the fetch options to try.
		setup func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions
		want  string
	}{
		{"modified layer", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			mb, _ := manifestOf(t, c, p.repo, p.versions["1.0.0"].Digest)
			var m ocispec.Manifest
			_ = json.Unmarshal(mb, &m)
			p.srv.tamper(m.Layers[0].Digest.String(), "flip")
			return FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath}
		}, "does not match its digest"},
		{"truncated blob", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			mb, _ := manifestOf(t, c, p.repo, p.versions["1.0.0"].Digest)
			var m ocispec.Manifest
			_ = json.Unmarshal(mb, &m)
			p.srv.tamper(m.Layers[0].Digest.String(), "truncate")
			return FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath}
		}, "wrong size"},
		{"modified manifest, by digest", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			p.srv.tamper("manifests/"+p.versions["1.0.0"].Digest, "flip")
			return FetchOptions{Ref: p.repo + "@" + p.versions["1.0.0"].Digest, LockPath: lockPath}
		}, "manifest does not match its digest"},
		{"modified manifest, by tag", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			p.srv.tamper("manifests/1.0.0", "flip")
			return FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath}
		}, "refused"},
		{"modified manifest, pinned in the lock", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			if _, err := c.Fetch(context.Background(), FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath}); err != nil {
				t.Fatal(err)
			}
			fresh := newClient(t)
			trustKey(t, fresh, p.srv.host()+"/team/*", p.pub)
			*c = *fresh
			p.srv.tamper("manifests/"+p.versions["1.0.0"].Digest, "flip")
			return FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath}
		}, "manifest does not match its digest"},
		{"untrusted key", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			_, mallory := keyPair(t, t.TempDir(), "mallory")
			push(t, newClient(t), blueprintDir(t, "3.0.0", "evil"), p.repo, mallory)
			return FetchOptions{Ref: p.repo + ":3.0.0", LockPath: lockPath}
		}, "not signed by"},
		{"signature over a different digest", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			unsigned := push(t, newClient(t), blueprintDir(t, "3.0.0", "unsigned"), p.repo, nil)
			other, _ := manifestOf(t, c, p.repo, p.versions["1.0.0"].Digest)
			bundle, err := signing.Sign(context.Background(), p.kp, p.repo, other)
			if err != nil {
				t.Fatal(err)
			}
			_, subj := manifestOf(t, c, p.repo, unsigned.Digest)
			attach(t, c, p.repo, subj, bundle)
			return FetchOptions{Ref: p.repo + ":3.0.0", LockPath: lockPath}
		}, "no signature verifies"},
		{"missing signature", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			push(t, newClient(t), blueprintDir(t, "3.0.0", "unsigned"), p.repo, nil)
			return FetchOptions{Ref: p.repo + ":3.0.0", LockPath: lockPath}
		}, "no signature found"},
		{"repository no rule trusts", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			other := p.srv.host() + "/elsewhere/bp"
			push(t, newClient(t), blueprintDir(t, "1.0.0", ""), other, p.kp)
			return FetchOptions{Ref: other + ":1.0.0", LockPath: lockPath}
		}, "no trust policy rule matches"},
		{"tag moved after locking", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			if _, err := c.Fetch(context.Background(), FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath}); err != nil {
				t.Fatal(err)
			}
			// Re-publish 1.0.0 with other content (validly signed), and
			// pull the lock on a machine with an empty cache.
			// The publisher has to force it: push refuses to move a
			// published version's tag.
			pusher := newClient(t)
			moved, err := pusher.Push(context.Background(), PushOptions{Dir: blueprintDir(t, "1.0.0", "moved"), Ref: p.repo, Force: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pusher.Sign(context.Background(), SignOptions{Ref: p.repo + "@" + moved.Digest, Key: p.kp}); err != nil {
				t.Fatal(err)
			}
			fresh := newClient(t)
			trustKey(t, fresh, p.srv.host()+"/team/*", p.pub)
			*c = *fresh
			return FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath}
		}, "tag was moved after locking"},
		{"downgrade", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			if _, err := c.Fetch(context.Background(), FetchOptions{Ref: p.repo + ":2.0.0", LockPath: lockPath}); err != nil {
				t.Fatal(err)
			}
			return FetchOptions{Ref: p.repo, Constraint: "~> 1.0", LockPath: lockPath, Update: true}
		}, "lower than the locked 2.0.0"},
		{"version tag pointing at another version", func(t *testing.T, p *published, c *Client, lockPath string) FetchOptions {
			ref, _ := ParseReference(p.repo)
			repo, _ := c.repository(ref)
			mb, desc := manifestOf(t, c, p.repo, p.versions["2.0.0"].Digest)
			if err := repo.Manifests().PushReference(context.Background(), desc, bytes.NewReader(mb), "1.5.0"); err != nil {
				t.Fatal(err)
			}
			return FetchOptions{Ref: p.repo + ":1.5.0", LockPath: lockPath}
		}, "tag says version 1.5.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := publish(t, "1.0.0", "2.0.0")
			c, lockPath := p.consumer(t)
			o := tc.setup(t, p, c, lockPath)
			lockBefore := fileState(t, lockPath)
			indexBefore := fileState(t, filepath.Join(c.CacheDir(), "oci", "index.json"))
			unpackedBefore, _ := os.ReadDir(filepath.Join(c.CacheDir(), "blueprints"))
			f, err := c.Fetch(context.Background(), o)
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			if !IsRefusal(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (refusal %v), want a refusal containing %q", err, IsRefusal(err), tc.want)
			}
			if fileState(t, lockPath) != lockBefore {
				t.Errorf("lock changed by a refused pull")
			}
			if fileState(t, filepath.Join(c.CacheDir(), "oci", "index.json")) != indexBefore {
				t.Errorf("cache index changed by a refused pull")
			}
			if after, _ := os.ReadDir(filepath.Join(c.CacheDir(), "blueprints")); len(after) != len(unpackedBefore) {
				t.Errorf("blueprint unpacked by a refused pull")
			}
		})
	}
}

func TestDowngradeAllowed(t *testing.T) {
	t.Parallel()
	p := publish(t, "1.0.0", "2.0.0")
	c, lockPath := p.consumer(t)
	ctx := context.Background()
	if _, err := c.Fetch(ctx, FetchOptions{Ref: p.repo + ":2.0.0", LockPath: lockPath}); err != nil {
		t.Fatal(err)
	}
	f, err := c.Fetch(ctx, FetchOptions{Ref: p.repo, Constraint: "~> 1.0", LockPath: lockPath, Update: true, AllowDowngrade: true})
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := ReadLock(lockPath); f.Version != "1.0.0" || l.Find(p.repo).Version != "1.0.0" {
		t.Errorf("downgrade: %+v", f)
	}
}

func TestCorruptCacheRefetched(t *testing.T) {
	t.Parallel()
	p := publish(t, "1.0.0")
	c, lockPath := p.consumer(t)
	ctx := context.Background()
	first, err := c.Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath})
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := manifestOf(t, c, p.repo, first.Digest)
	var m ocispec.Manifest
	_ = json.Unmarshal(mb, &m)
	layerPath := filepath.Join(c.CacheDir(), "oci", "blobs", "sha256", m.Layers[0].Digest.Encoded())
	if err := os.WriteFile(layerPath, []byte("corrupted"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registry down: the corrupt entry is refused, never used.
	p.srv.setDown(true)
	if _, err := withHome(t, c).Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("got %v, want the corrupt cache entry reported", err)
	}
	// Registry up: it is fetched again.
	p.srv.setDown(false)
	again, err := withHome(t, c).Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath})
	if err != nil {
		t.Fatal(err)
	}
	if again.FromCache || again.Digest != first.Digest {
		t.Errorf("refetch %+v", again)
	}
	if b, err := os.ReadFile(layerPath); err != nil || digest.FromBytes(b) != m.Layers[0].Digest {
		t.Errorf("cache blob not repaired: %v", err)
	}
	// An edited unpacked directory is replaced from the verified layer.
	bpFile := filepath.Join(again.Dir, "blueprint.yaml")
	if err := os.WriteFile(bpFile, []byte("version: \"6.6.6\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third, err := withHome(t, c).Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(bpFile); !third.FromCache || bytes.Contains(data, []byte("6.6.6")) {
		t.Errorf("edited unpacked blueprint was used: %s", data)
	}
	// A corrupt manifest blob in the layout is moved aside, then re-fetched.
	mPath := filepath.Join(c.CacheDir(), "oci", "blobs", "sha256", digest.Digest(first.Digest).Encoded())
	if err := os.WriteFile(mPath, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	fourth, err := withHome(t, c).Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath})
	if err != nil {
		t.Fatal(err)
	}
	if fourth.FromCache {
		t.Errorf("corrupt manifest served from cache")
	}
}

func TestInsecureSkipVerify(t *testing.T) {
	t.Parallel()
	p := publish(t)
	unsigned := push(t, newClient(t), blueprintDir(t, "1.0.0", ""), p.repo, nil)
	c, lockPath := p.consumer(t)
	var progress bytes.Buffer
	c.cfg.Progress = &progress
	f, err := c.Fetch(context.Background(), FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath, Verification: Verification{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	if f.Signer != Unverified || f.Digest != unsigned.Digest || !strings.Contains(progress.String(), "WARNING") {
		t.Errorf("insecure pull %+v, progress %q", f, progress.String())
	}
}

func TestSignVerifyOneOffAndBundle(t *testing.T) {
	t.Parallel()
	p := publish(t)
	pusher := newClient(t)
	pushed := push(t, pusher, blueprintDir(t, "1.0.0", ""), p.repo, nil)
	bundleFile := filepath.Join(t.TempDir(), "bp.sigstore.json")
	ctx := context.Background()
	s, err := pusher.Sign(ctx, SignOptions{Ref: p.repo + ":1.0.0", Key: p.kp, BundleOut: bundleFile})
	if err != nil {
		t.Fatal(err)
	}
	if s.Subject != p.repo+"@"+pushed.Digest {
		t.Errorf("signed %s", s.Subject)
	}
	// No trust policy at all: the one-off key flag decides.
	c := newClient(t)
	v, err := c.Verify(ctx, VerifyOptions{Ref: p.repo + ":1.0.0", Verification: Verification{OneOff: &signing.RequirementSpec{Keys: []string{p.pub}}}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Signer != s.Signer || v.Version != "1.0.0" {
		t.Errorf("verified %+v", v)
	}
	_, err = c.Verify(ctx, VerifyOptions{Ref: p.repo + ":1.0.0"})
	if !errors.As(err, new(*signing.VerificationError)) {
		t.Errorf("verify without trust: got %v, want a VerificationError", err)
	}
	// The offline bundle verifies an unsigned copy pushed elsewhere.
	other := p.srv.host() + "/mirror/bp"
	push(t, pusher, blueprintDir(t, "1.0.0", ""), other, nil)
	oneOff := Verification{OneOff: &signing.RequirementSpec{Keys: []string{p.pub}}}
	if _, err := c.Verify(ctx, VerifyOptions{Ref: other + ":1.0.0", Verification: oneOff}); err == nil {
		t.Fatalf("mirror without a referrer verified")
	}
	// The title annotation is the repository's last element, so the
	// mirror's manifest is the same only when the names match.
	if _, err := c.Verify(ctx, VerifyOptions{Ref: other + ":1.0.0", Verification: oneOff, Bundles: []string{bundleFile}}); err != nil {
		t.Fatalf("offline bundle: %v", err)
	}
	if _, err := c.Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", Verification: oneOff}); err != nil {
		t.Fatalf("pull with --key: %v", err)
	}
}

func TestLoginBasicAuth(t *testing.T) {
	t.Parallel()
	srv := newRegistry(t)
	srv.user, srv.pass = "alice", "s3cret"
	home := t.TempDir()
	c, err := New(Config{Home: home, Credentials: nil})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Login(ctx, srv.host(), "alice", "wrong"); err == nil {
		t.Fatalf("wrong password accepted")
	}
	if err := c.Login(ctx, srv.host(), "alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(c.AuthFile())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("auth file: %v %v", err, st)
	}
	// A new client on the same home pushes with the stored login.
	c2, _ := New(Config{Home: home})
	if _, err := c2.Push(ctx, PushOptions{Dir: blueprintDir(t, "1.0.0", ""), Ref: srv.host() + "/team/bp"}); err != nil {
		t.Fatal(err)
	}
	if err := c2.Logout(ctx, srv.host()); err != nil {
		t.Fatal(err)
	}
	c3, _ := New(Config{Home: home})
	if _, err := c3.Push(ctx, PushOptions{Dir: blueprintDir(t, "1.0.1", ""), Ref: srv.host() + "/team/bp"}); err == nil || !strings.Contains(err.Error(), "nemoclaw registry login "+srv.host()) {
		t.Fatalf("push after logout: got %v, want the hint to log in", err)
	}
}

func TestProgressForLargeTransfers(t *testing.T) {
	t.Parallel()
	p := publish(t)
	dir := blueprintDir(t, "1.0.0", "")
	big := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16)
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	var pushLog, pullLog bytes.Buffer
	pusher := newClient(t)
	pusher.cfg.Progress = &pushLog
	push(t, pusher, dir, p.repo, p.kp)
	c, lockPath := p.consumer(t)
	c.cfg.Progress = &pullLog
	f, err := c.Fetch(context.Background(), FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lockPath})
	if err != nil {
		t.Fatal(err)
	}
	for name, log := range map[string]string{"push": pushLog.String(), "pull": pullLog.String()} {
		if !strings.Contains(log, "100% of 3.0 MiB") {
			t.Errorf("%s progress lacks percentages:\n%s", name, log)
		}
	}
	if got, err := os.ReadFile(filepath.Join(f.Dir, "weights.bin")); err != nil || !bytes.Equal(got, big) {
		t.Errorf("large file did not survive: %v", err)
	}
}
