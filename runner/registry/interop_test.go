package registry

import (
	"context"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// TestSecondSignatureDeleteDisabled signs one digest with two keys on a
// registry without the referrers API whose deletes are disabled (Debian's
// docker-registry as shipped): both signs succeed and either key verifies.
func TestSecondSignatureDeleteDisabled(t *testing.T) {
	t.Parallel()
	srv := newRegistryWith(t, regOptions{noDelete: true})
	repo := srv.host() + "/team/bp"
	c := newClient(t)
	keys := t.TempDir()
	prefixA, kpA := keyPair(t, keys, "a")
	prefixB, kpB := keyPair(t, keys, "b")
	p := push(t, c, blueprintDir(t, "1.0.0", ""), repo, nil)
	ctx := context.Background()
	for i, kp := range []*signing.Keypair{kpA, kpB, kpA} {
		if _, err := c.Sign(ctx, SignOptions{Ref: repo + ":1.0.0", Key: kp}); err != nil {
			t.Fatalf("sign #%d: %v", i+1, err)
		}
	}
	for _, prefix := range []string{prefixA, prefixB} {
		v, err := newClient(t).Verify(ctx, VerifyOptions{Ref: repo + "@" + p.Digest, Verification: Verification{OneOff: &signing.RequirementSpec{Keys: []string{prefix + ".pub"}}}})
		if err != nil {
			t.Fatalf("verify with %s: %v", prefix, err)
		}
		if v.Signatures < 2 {
			t.Errorf("verify with %s saw %d signatures, want at least 2", prefix, v.Signatures)
		}
	}
}
