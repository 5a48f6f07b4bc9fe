package egress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// authority is the per-sandbox interception CA. Its private key lives only
// in this process's memory; the sandbox gets the certificate alone.
type authority struct {
	certDER []byte
	key     *ecdsa.PrivateKey
	certPEM []byte

	// Made on the first interception, not at start-up, where every
	// sandbox waits for the CA: the parsed CA certificate (the parent of
	// every leaf) and leafKey, shared by all leaves so that minting is
	// then one signature.
	minting sync.Once
	cert    *x509.Certificate
	leafKey *ecdsa.PrivateKey
	mintErr error

	mu    sync.Mutex
	cache map[string]*tls.Certificate
}

const leafCacheMax = 4096

// CA is a sandbox's interception certificate authority, made with NewCA
// ahead of New so that its key generation overlaps other start-up work.
type CA struct{ a *authority }

// NewCA creates the interception CA for the sandbox named name ("" when
// it is made before the name is known; the name only labels the
// certificate).
func NewCA(name string) (*CA, error) {
	a, err := newAuthority(name)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	return &CA{a: a}, nil
}

func newAuthority(name string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: strings.TrimSpace("nemoclaw sandbox CA " + name), Organization: []string{"nemoclaw"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	return &authority{
		certDER: der, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		cache:   map[string]*tls.Certificate{},
	}, nil
}

// mintReady parses the CA certificate and makes the leaf key, once.
func (a *authority) mintReady() error {
	a.minting.Do(func() {
		if a.cert, a.mintErr = x509.ParseCertificate(a.certDER); a.mintErr != nil {
			a.mintErr = fmt.Errorf("parse CA: %w", a.mintErr)
			return
		}
		if a.leafKey, a.mintErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); a.mintErr != nil {
			a.mintErr = fmt.Errorf("generate leaf key: %w", a.mintErr)
		}
	})
	return a.mintErr
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// leaf returns a certificate for host, minted on first use and cached.
func (a *authority) leaf(host string) (*tls.Certificate, error) {
	now := time.Now()
	a.mu.Lock()
	c, ok := a.cache[host]
	a.mu.Unlock()
	if ok && now.Before(c.Leaf.NotAfter.Add(-time.Hour)) {
		return c, nil
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := a.mintReady(); err != nil {
		return nil, fmt.Errorf("mint certificate for %s: %w", host, err)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &a.leafKey.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("mint certificate for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mint certificate for %s: %w", host, err)
	}
	c = &tls.Certificate{Certificate: [][]byte{der, a.cert.Raw}, PrivateKey: a.leafKey, Leaf: leaf}
	a.mu.Lock()
	if len(a.cache) >= leafCacheMax {
		for k := range a.cache { // evict an arbitrary entry
			delete(a.cache, k)
			break
		}
	}
	a.cache[host] = c
	a.mu.Unlock()
	return c, nil
}
