package signing

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
)

var pass = []byte("correct horse battery staple")

// newKey generates a key pair under t.TempDir and returns the prefix.
func newKey(t *testing.T, name string) (string, *Keypair) {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), name)
	keyPath, pubPath, err := GenerateKey(prefix, pass)
	if err != nil {
		t.Fatal(err)
	}
	if keyPath != prefix+".key" || pubPath != prefix+".pub" {
		t.Fatalf("paths %s %s", keyPath, pubPath)
	}
	kp, err := LoadPrivateKey(keyPath, pass)
	if err != nil {
		t.Fatal(err)
	}
	return prefix, kp
}

func TestGenerateKeyFiles(t *testing.T) {
	t.Parallel()
	prefix, kp := newKey(t, "k")
	st, err := os.Stat(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(prefix + ".key")
	if !strings.Contains(string(data), "ENCRYPTED SIGSTORE PRIVATE KEY") {
		t.Errorf("private key is not the encrypted sigstore PEM:\n%s", data)
	}
	pub, err := LoadPublicKey(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(pub) != Fingerprint(kp.Public()) {
		t.Errorf("public key file does not match the private key")
	}
	if _, _, err := GenerateKey(prefix, pass); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("overwrite: got %v, want 'already exists'", err)
	}
	if _, err := LoadPrivateKey(prefix+".key", []byte("wrong")); err == nil {
		t.Errorf("wrong passphrase decrypted the key")
	}
	if _, _, err := GenerateKey(filepath.Join(t.TempDir(), "x"), nil); err == nil {
		t.Errorf("empty passphrase accepted")
	}
}

func TestKeySignVerify(t *testing.T) {
	t.Parallel()
	prefix, kp := newKey(t, "signer")
	otherPrefix, _ := newKey(t, "other")
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	b, err := Sign(context.Background(), kp, "r", manifest)
	if err != nil {
		t.Fatal(err)
	}
	// nemoclaw's first form: a message signature over the manifest bytes.
	message, err := SignMessage(context.Background(), kp, manifest)
	if err != nil {
		t.Fatal(err)
	}
	// The same key attesting something else about the same digest.
	sum := sha256.Sum256(manifest)
	sbom := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"r","digest":{"sha256":"%x"}}],"predicateType":"https://spdx.dev/Document","predicate":{}}`, sum)
	attestation, err := signContent(context.Background(), kp, &sign.DSSEData{Data: []byte(sbom), PayloadType: InTotoPayloadType})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), BundleMediaType) {
		t.Fatalf("bundle lacks media type %s: %s", BundleMediaType, b)
	}
	trusted, err := RequirementSpec{Keys: []string{prefix + ".pub"}}.Build("", "--key flag")
	if err != nil {
		t.Fatal(err)
	}
	untrusted, err := RequirementSpec{Keys: []string{otherPrefix + ".pub"}}.Build("", "rule \"x\"")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		req      *Requirement
		bundles  [][]byte
		artifact []byte
		wantErr  string
	}{
		{"trusted key", trusted, [][]byte{b}, manifest, ""},
		{"untrusted key", untrusted, [][]byte{b}, manifest, "not signed by"},
		{"different digest", trusted, [][]byte{b}, append([]byte(" "), manifest...), "no signature verifies"},
		{"no signature", trusted, nil, manifest, "no signature found"},
		{"garbage bundle", trusted, [][]byte{[]byte("{}")}, manifest, "not a valid Sigstore bundle"},
		{"one good of two", trusted, [][]byte{[]byte("{}"), b}, manifest, ""},
		{"message signature (first form)", trusted, [][]byte{message}, manifest, ""},
		{"message signature, different digest", trusted, [][]byte{message}, append([]byte(" "), manifest...), "no signature verifies"},
		{"attestation is no signature", trusted, [][]byte{attestation}, manifest, `attestation of type "https://spdx.dev/Document"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.req.VerifyBundles("r@sha256:x", tc.bundles, tc.artifact)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if want := "key " + Fingerprint(kp.Public()); s.String() != want {
					t.Errorf("signer %q, want %q", s, want)
				}
				return
			}
			var ve *VerificationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want *VerificationError", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || ve.DecidedBy != tc.req.DecidedBy {
				t.Errorf("error %q: want it to contain %q and name %q", err, tc.wantErr, tc.req.DecidedBy)
			}
		})
	}
}

func TestKeylessIdentity(t *testing.T) {
	t.Parallel()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	manifest := []byte(`{"schemaVersion":2}`)
	const issuer = "https://oidc.example.com"
	entity, err := vs.Sign("alice@example.com", issuer, manifest)
	if err != nil {
		t.Fatal(err)
	}
	prefix, _ := newKey(t, "k")
	keyOnly, err := RequirementSpec{Keys: []string{prefix + ".pub"}}.Build("", "k")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		req     *Requirement
		art     []byte
		wantErr string
	}{
		{"exact identity", &Requirement{Identities: []Identity{{Issuer: issuer, Subject: "alice@example.com"}}, TrustedRoot: vs}, manifest, ""},
		{"regexp identity", &Requirement{Identities: []Identity{{IssuerRegexp: `^https://oidc\.example\.com$`, SubjectRegexp: `@example\.com$`}}, TrustedRoot: vs}, manifest, ""},
		{"subject mismatch", &Requirement{Identities: []Identity{{Issuer: issuer, Subject: "mallory@example.com"}}, TrustedRoot: vs}, manifest, "mallory"},
		{"issuer mismatch", &Requirement{Identities: []Identity{{Issuer: "https://evil.example", Subject: "alice@example.com"}}, TrustedRoot: vs}, manifest, "evil"},
		{"other artifact", &Requirement{Identities: []Identity{{Issuer: issuer, Subject: "alice@example.com"}}, TrustedRoot: vs}, []byte("x"), "invalid signature"},
		{"no root", &Requirement{Identities: []Identity{{Issuer: issuer, Subject: "alice@example.com"}}}, manifest, "trusted root"},
		{"keys only", keyOnly, manifest, "no keyless identity is trusted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.req.VerifyEntity(entity, tc.art)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Subject != "alice@example.com" || s.Issuer != issuer {
					t.Errorf("signer %+v", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestKeylessCosignStatement: a keyless signature in cosign's form (DSSE
// around an in-toto statement naming the manifest digest) verifies against
// the manifest it names and no other.
func TestKeylessCosignStatement(t *testing.T) {
	t.Parallel()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	manifest := []byte(`{"schemaVersion":2}`)
	sum := sha256.Sum256(manifest)
	statement := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"r","digest":{"sha256":"%x"}}],"predicateType":%q,"predicate":{}}`, sum, SignPredicateType)
	const issuer = "https://oidc.example.com"
	entity, err := vs.Attest("alice@example.com", issuer, []byte(statement))
	if err != nil {
		t.Fatal(err)
	}
	req := &Requirement{Identities: []Identity{{Issuer: issuer, Subject: "alice@example.com"}}, TrustedRoot: vs}
	if s, err := req.VerifyEntity(entity, manifest); err != nil || s.Subject != "alice@example.com" {
		t.Fatalf("verify: %+v %v", s, err)
	}
	if _, err := req.VerifyEntity(entity, []byte(`{"schemaVersion":3}`)); err == nil {
		t.Fatal("a statement about another digest verified")
	}
}
