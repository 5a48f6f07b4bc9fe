package egress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
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
	leafPub []byte // leafKey's uncompressed point, for every leaf's SPKI
	mintErr error

	mu    sync.Mutex
	cache map[string]*tls.Certificate
}

const leafCacheMax = 4096

// CA is a sandbox's interception certificate authority, made with NewCA,
// or with StartCA ahead of New so that its key generation and signature
// overlap the rest of a sandbox's start-up.
type CA struct {
	ready chan struct{} // closed when a or err is set
	a     *authority
	err   error
}

// NewCA creates the interception CA for the sandbox named name ("" when
// it is made before the name is known; the name only labels the
// certificate).
func NewCA(name string) (*CA, error) {
	c := &CA{ready: make(chan struct{})}
	c.make(name)
	if c.err != nil {
		return nil, c.err
	}
	return c, nil
}

// StartCA starts making the interception CA on another goroutine and
// returns at once; whatever needs the CA waits for it (CertPEM, the
// proxy's first interception).
func StartCA(name string) *CA {
	c := &CA{ready: make(chan struct{})}
	go c.make(name)
	return c
}

func (c *CA) make(name string) {
	defer close(c.ready)
	if c.a, c.err = newAuthority(name); c.err != nil {
		c.err = fmt.Errorf("egress: %w", c.err)
	}
}

// authority waits for the CA to be made.
func (c *CA) authority() (*authority, error) {
	<-c.ready
	return c.a, c.err
}

// CertPEM returns the CA certificate in PEM form, waiting for it to be
// made. The key never leaves this process.
func (c *CA) CertPEM() ([]byte, error) {
	a, err := c.authority()
	if err != nil {
		return nil, err
	}
	return a.certPEM, nil
}

// newAuthority makes a fresh P-256 key and its self-signed CA certificate:
// version 3, a random serial, subject and issuer O "nemoclaw" and CN
// "nemoclaw sandbox CA <name>", valid from an hour ago for a year, critical
// KeyUsage certSign|cRLSign|digitalSignature, critical BasicConstraints
// CA:TRUE pathlen:0, and a SubjectKeyIdentifier. encodeCA writes it rather
// than x509.CreateCertificate, whose reflection and self-verification cost
// over twice the signature itself on the sandbox's start-up path.
func newAuthority(name string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	cn := strings.TrimSpace("nemoclaw sandbox CA " + name)
	der, err := encodeCA(key, serial(), cn, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	return &authority{
		certDER: der, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		cache:   map[string]*tls.Certificate{},
	}, nil
}

// mintReady parses the CA certificate (its RawSubject is every leaf's
// issuer, its SubjectKeyId their AuthorityKeyIdentifier) and makes the
// leaf key, once.
func (a *authority) mintReady() error {
	a.minting.Do(func() {
		if a.cert, a.mintErr = x509.ParseCertificate(a.certDER); a.mintErr != nil {
			a.mintErr = fmt.Errorf("parse CA: %w", a.mintErr)
			return
		}
		if a.leafKey, a.mintErr = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); a.mintErr != nil {
			a.mintErr = fmt.Errorf("generate leaf key: %w", a.mintErr)
			return
		}
		if a.leafPub, a.mintErr = a.leafKey.PublicKey.Bytes(); a.mintErr != nil {
			a.mintErr = fmt.Errorf("leaf key: %w", a.mintErr)
		}
	})
	return a.mintErr
}

// serial returns a random certificate serial number, big-endian, uniform
// below 2^127 so that its INTEGER is positive and at most 16 octets.
func serial() []byte {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand crashes the program instead)
	b[0] &= 0x7f
	return b
}

// hostIP returns host's address for an iPAddress SubjectAltName (IPv4 in
// 4 bytes, IPv4-mapped IPv6 included, as crypto/x509 writes it; a zone is
// dropped), or nil when host is not an IP literal.
func hostIP(host string) []byte {
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	return addr.Unmap().AsSlice()
}

// leaf returns a certificate for host, minted on first use and cached
// until an hour before it expires: subject CN host, issued by the CA, valid
// from an hour ago for seven days, critical KeyUsage digitalSignature,
// ExtKeyUsage serverAuth, the CA's key identifier, and host as the
// SubjectAltName (an iPAddress when host is an IP literal, else a dNSName).
func (a *authority) leaf(host string) (*tls.Certificate, error) {
	now := time.Now()
	a.mu.Lock()
	c, ok := a.cache[host]
	a.mu.Unlock()
	if ok && now.Before(c.Leaf.NotAfter.Add(-time.Hour)) {
		return c, nil
	}
	if err := a.mintReady(); err != nil {
		return nil, fmt.Errorf("mint certificate for %s: %w", host, err)
	}
	der, err := encodeLeaf(a.key, serial(), a.cert.RawSubject, a.cert.SubjectKeyId, host, hostIP(host),
		now.Add(-time.Hour), now.Add(7*24*time.Hour), a.leafPub)
	if err != nil {
		return nil, fmt.Errorf("mint certificate for %s: %w", host, err)
	}
	// tls.Certificate.Leaf (whose NotAfter the cache check reads) wants
	// the parsed certificate; parsing is about a seventh of minting.
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
