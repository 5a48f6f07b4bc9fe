package signing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	in_toto "github.com/in-toto/attestation/go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Formats of what a signature signs, as cosign v2 writes them.
const (
	// SignPredicateType is the in-toto predicate type of an OCI artifact
	// signature in cosign's bundle format (cosign sign
	// --new-bundle-format): the statement says nothing but "this subject
	// is signed".
	SignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
)

// Sign makes a Sigstore bundle (v0.3 JSON) that signs a blueprint manifest
// the way cosign v2 signs an OCI artifact in its bundle format: a DSSE
// envelope around an in-toto statement whose subject is the manifest's
// sha256 digest (named name, the repository) and whose predicate type is
// SignPredicateType. `cosign verify --new-bundle-format` accepts it. It
// needs no network: the bundle carries a public key hint, no certificate,
// no transparency log entry.
func Sign(ctx context.Context, kp *Keypair, name string, manifest []byte) ([]byte, error) {
	sum := sha256.Sum256(manifest)
	st := &in_toto.Statement{
		Type:          in_toto.StatementTypeUri,
		Subject:       []*in_toto.ResourceDescriptor{{Name: name, Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}}},
		PredicateType: SignPredicateType,
		Predicate:     &structpb.Struct{},
	}
	payload, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("sign: encode statement: %w", err)
	}
	return signContent(ctx, kp, &sign.DSSEData{Data: payload, PayloadType: InTotoPayloadType})
}

// SignMessage makes a bundle whose message signature covers manifest's
// bytes directly: the form nemoclaw signed with before it signed as cosign
// does. Verification still accepts it; it is kept to test that.
func SignMessage(ctx context.Context, kp *Keypair, manifest []byte) ([]byte, error) {
	return signContent(ctx, kp, &sign.PlainData{Data: manifest})
}

func signContent(ctx context.Context, kp *Keypair, content sign.Content) ([]byte, error) {
	pb, err := sign.Bundle(content, kp, sign.BundleOptions{Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	out, err := b.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("sign: encode bundle: %w", err)
	}
	return out, nil
}
