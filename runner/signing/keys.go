package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// Key file suffixes written by GenerateKey.
const (
	PrivateKeySuffix = ".key"
	PublicKeySuffix  = ".pub"
)

// GenerateKey creates an ECDSA P-256 key pair and writes PREFIX.key (PKCS#8,
// encrypted with passphrase using scrypt + secretbox: the "ENCRYPTED SIGSTORE
// PRIVATE KEY" PEM that cosign also reads) and PREFIX.pub (PKIX PEM). It
// refuses to overwrite existing files and an empty passphrase.
func GenerateKey(prefix string, passphrase []byte) (keyPath, pubPath string, err error) {
	if len(passphrase) == 0 {
		return "", "", errors.New("generate key: empty passphrase; set NEMOCLAW_KEY_PASSWORD or type one on a terminal")
	}
	keyPath, pubPath = prefix+PrivateKeySuffix, prefix+PublicKeySuffix
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("generate key: %s already exists; choose another prefix or remove it", p)
		}
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	enc, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(priv, func(bool) ([]byte, error) { return passphrase, nil })
	if err != nil {
		return "", "", fmt.Errorf("generate key: encrypt: %w", err)
	}
	privPEM := cryptoutils.PEMEncode(cryptoutils.EncryptedSigstorePrivateKeyPEMType, enc)
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	if err := writeExclusive(keyPath, privPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	if err := writeExclusive(pubPath, pubPEM, 0o644); err != nil {
		_ = os.Remove(keyPath)
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	return keyPath, pubPath, nil
}

func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = os.Remove(path)
		return err
	}
	return f.Close()
}

// Keypair is a persistent ECDSA P-256 signing key; it implements
// sigstore-go's sign.Keypair so sign.Bundle can use it offline.
type Keypair struct {
	priv *ecdsa.PrivateKey
	hint []byte
}

var _ sign.Keypair = (*Keypair)(nil)

// NewKeypair wraps an ECDSA P-256 private key.
func NewKeypair(priv *ecdsa.PrivateKey) (*Keypair, error) {
	if priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key curve %s: only ECDSA P-256 keys are supported", priv.Curve.Params().Name)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &Keypair{priv: priv, hint: []byte(base64.StdEncoding.EncodeToString(sum[:]))}, nil
}

// LoadPrivateKey reads and decrypts a PREFIX.key file written by GenerateKey
// (or cosign generate-key-pair with an ECDSA P-256 key).
func LoadPrivateKey(path string, passphrase []byte) (*Keypair, error) {
	data, err := readPrivateKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(data, func(bool) ([]byte, error) { return passphrase, nil })
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w (is the passphrase in NEMOCLAW_KEY_PASSWORD right?)", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("load key %s: %T: only ECDSA P-256 keys are supported", path, k)
	}
	kp, err := NewKeypair(ek)
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", path, err)
	}
	return kp, nil
}

// CheckPrivateKeyFile checks that path holds a private key, before a
// passphrase is asked for: a public key given to sign is a mistake to name,
// not a passphrase to ask about.
func CheckPrivateKeyFile(path string) error {
	_, err := readPrivateKeyFile(path)
	return err
}

// readPrivateKeyFile reads path and refuses a public key or a file that is
// not PEM at all.
func readPrivateKeyFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	switch {
	case block == nil:
		return nil, fmt.Errorf("load key %s: not a PEM file; signing needs the private key PREFIX%s written by 'nemoclaw key generate' (or cosign generate-key-pair)", path, PrivateKeySuffix)
	case block.Type == "PUBLIC KEY":
		return nil, fmt.Errorf("load key %s: this is a public key; signing needs the private key (PREFIX%s beside PREFIX%s); the public key is for verify and the trust policy", path, PrivateKeySuffix, PublicKeySuffix)
	}
	return data, nil
}

// CheckPublicKeyFile checks that path holds a public key; a private key
// given where a public one belongs is named as such.
func CheckPublicKeyFile(path string) error {
	_, err := LoadPublicKey(path)
	if err != nil && strings.HasSuffix(path, PrivateKeySuffix) {
		return fmt.Errorf("%w; this looks like a private key: give PREFIX%s", err, PublicKeySuffix)
	}
	return err
}

// LoadPublicKey reads a PEM public key file (PREFIX.pub).
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	return pub, nil
}

// ParsePublicKey parses a PKIX PEM public key.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\" block")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

// Fingerprint names a public key as "sha256:<hex of its PKIX DER>", the
// signer string recorded in nemoclaw.lock for key-based signatures.
func Fingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unknown-key"
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Public returns the public half of the key pair.
func (k *Keypair) Public() crypto.PublicKey { return k.priv.Public() }

// GetHashAlgorithm implements sign.Keypair.
func (k *Keypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}

// GetSigningAlgorithm implements sign.Keypair.
func (k *Keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}

// GetHint implements sign.Keypair: base64 SHA-256 of the PKIX public key.
func (k *Keypair) GetHint() []byte { return k.hint }

// GetKeyAlgorithm implements sign.Keypair.
func (k *Keypair) GetKeyAlgorithm() string { return "ECDSA" }

// GetPublicKey implements sign.Keypair.
func (k *Keypair) GetPublicKey() crypto.PublicKey { return k.priv.Public() }

// GetPublicKeyPem implements sign.Keypair.
func (k *Keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
	return string(b), err
}

// SignData implements sign.Keypair: it signs the SHA-256 of data and returns
// the signature and that digest.
func (k *Keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	sum := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, sum[:])
	if err != nil {
		return nil, nil, err
	}
	return sig, sum[:], nil
}
