package signing

import (
	"context"
	"fmt"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
)

// Sign makes a Sigstore bundle (v0.3 JSON) whose message signature covers
// manifest, the exact bytes of a blueprint's OCI manifest. It needs no
// network: the bundle carries a public key hint, no certificate, no
// transparency log entry.
func Sign(ctx context.Context, kp *Keypair, manifest []byte) ([]byte, error) {
	pb, err := sign.Bundle(&sign.PlainData{Data: manifest}, kp, sign.BundleOptions{Context: ctx})
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
