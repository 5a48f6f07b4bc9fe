package egress

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// oldCA makes the CA the way newAuthority did before encodeCA, with
// x509.CreateCertificate and the same template, for the differential test.
func oldCA(key *ecdsa.PrivateKey, serial *big.Int, name string, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: strings.TrimSpace("nemoclaw sandbox CA " + name), Organization: []string{"nemoclaw"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
}

// oldLeaf makes a leaf the way leaf did before encodeLeaf.
func oldLeaf(ca *x509.Certificate, caKey, leafKey *ecdsa.PrivateKey, serial *big.Int, host string, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{host}
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca, &leafKey.PublicKey, caKey)
}

// newLeaf makes a leaf with encodeLeaf as authority.leaf does, but with
// the serial, time and keys given.
func newLeaf(ca *x509.Certificate, caKey, leafKey *ecdsa.PrivateKey, serial []byte, host string, now time.Time) ([]byte, error) {
	point, err := leafKey.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	return encodeLeaf(caKey, serial, ca.RawSubject, ca.SubjectKeyId, host, hostIP(host), now.Add(-time.Hour), now.Add(7*24*time.Hour), point)
}

// diffFields lists the fields of x509.Certificate in which a and b differ,
// skipping the raw encodings and the signature (which is randomised).
func diffFields(a, b *x509.Certificate) []string {
	skip := map[string]bool{"Raw": true, "Signature": true}
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var diff []string
	for i := range va.NumField() {
		f := va.Type().Field(i)
		if skip[f.Name] || !f.IsExported() {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			diff = append(diff, fmt.Sprintf("%s: old %v, new %v", f.Name, va.Field(i).Interface(), vb.Field(i).Interface()))
		}
	}
	return diff
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// differentialTimes are the "now"s the differential test encodes at: the
// present, and times whose validity crosses the UTCTime/GeneralizedTime
// boundaries of RFC 5280, in a non-UTC zone and with sub-second parts.
var differentialTimes = []time.Time{
	time.Now(),
	time.Date(2049, 12, 31, 23, 30, 0, 999_999_999, time.UTC),          // leaf and CA end in 2050
	time.Date(2050, 1, 1, 0, 30, 0, 0, time.UTC),                       // starts in 2049, ends after
	time.Date(1950, 1, 1, 0, 30, 0, 0, time.FixedZone("east", 5*3600)), // starts in 1949 (UTC)
	time.Date(2031, 7, 4, 9, 8, 7, 123, time.FixedZone("west", -7*3600)),
}

// TestCertDifferential encodes the CA and leaves both ways, with the same
// key, serial and time, and requires the same TBSCertificate byte for byte
// and the same parsed fields: the new encoder must not change what the
// sandbox's clients see.
func TestCertDifferential(t *testing.T) {
	long := strings.Repeat("x", 300)
	caNames := []string{"", "dev", "  padded name  ", "名前", "a*b&c", "under_score", long, "\xff"}
	hosts := []string{
		"example.com", "a.b-c.example", "xn--bcher-kva.example", "under_score.example", "*.wild.example",
		"10.0.0.1", "::1", "2001:db8::1", "::ffff:10.0.0.1", "fe80::1%eth0",
		strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + ".example",
		"", "bücher.example",
	}
	caKey, leafKey := mustKey(t), mustKey(t)
	for ti, now := range differentialTimes {
		for _, name := range caNames {
			t.Run(fmt.Sprintf("ca/%d/%q", ti, name), func(t *testing.T) {
				sn := serial()
				oldDER, oldErr := oldCA(caKey, new(big.Int).SetBytes(sn), name, now)
				newDER, newErr := encodeCA(caKey, sn, strings.TrimSpace("nemoclaw sandbox CA "+name), now.Add(-time.Hour), now.AddDate(1, 0, 0))
				compareDER(t, nil, oldDER, oldErr, newDER, newErr)
			})
		}
		caDER, err := oldCA(caKey, big.NewInt(1), "diff", now)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := x509.ParseCertificate(caDER)
		if err != nil {
			t.Fatal(err)
		}
		for _, host := range hosts {
			t.Run(fmt.Sprintf("leaf/%d/%q", ti, host), func(t *testing.T) {
				sn := serial()
				oldDER, oldErr := oldLeaf(ca, caKey, leafKey, new(big.Int).SetBytes(sn), host, now)
				newDER, newErr := newLeaf(ca, caKey, leafKey, sn, host, now)
				compareDER(t, ca, oldDER, oldErr, newDER, newErr)
			})
		}
	}
	// Serials of every length, leading zero bytes and a set top bit
	// included, encode as x509 encodes them.
	for _, sn := range [][]byte{{0}, {1}, {0x7f}, {0x00, 0x80}, {0, 0, 0, 5}, bytes.Repeat([]byte{0x7f}, 16), append([]byte{0}, bytes.Repeat([]byte{0xff}, 15)...)} {
		t.Run(fmt.Sprintf("serial/%x", sn), func(t *testing.T) {
			now := time.Now()
			oldDER, oldErr := oldCA(caKey, new(big.Int).SetBytes(sn), "s", now)
			newDER, newErr := encodeCA(caKey, sn, "nemoclaw sandbox CA s", now.Add(-time.Hour), now.AddDate(1, 0, 0))
			compareDER(t, nil, oldDER, oldErr, newDER, newErr)
		})
	}
}

// compareDER checks that the old and new encodings either both failed or
// have byte-identical TBSCertificates and field-by-field equal parses.
// parent is the issuer, nil for a self-signed certificate.
func compareDER(t *testing.T, parent *x509.Certificate, oldDER []byte, oldErr error, newDER []byte, newErr error) {
	t.Helper()
	if (oldErr != nil) != (newErr != nil) {
		t.Fatalf("old error %v, new error %v", oldErr, newErr)
	}
	if oldErr != nil {
		return
	}
	oldC, err := x509.ParseCertificate(oldDER)
	if err != nil {
		t.Fatalf("parse old: %v", err)
	}
	newC, err := x509.ParseCertificate(newDER)
	if err != nil {
		t.Fatalf("parse new: %v", err)
	}
	if !bytes.Equal(oldC.RawTBSCertificate, newC.RawTBSCertificate) {
		t.Errorf("TBSCertificate differs:\nold %x\nnew %x", oldC.RawTBSCertificate, newC.RawTBSCertificate)
	}
	if d := diffFields(oldC, newC); len(d) > 0 {
		t.Errorf("fields differ:\n%s", strings.Join(d, "\n"))
	}
	// Around the TBS: the same signatureAlgorithm, and a signature the
	// signer's key verifies.
	var oldOuter, newOuter struct {
		TBS, Alg asn1.RawValue
		Sig      asn1.BitString
	}
	if _, err := asn1.Unmarshal(oldDER, &oldOuter); err != nil {
		t.Fatal(err)
	}
	if _, err := asn1.Unmarshal(newDER, &newOuter); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(oldOuter.Alg.FullBytes, newOuter.Alg.FullBytes) || newOuter.Sig.BitLength != 8*len(newOuter.Sig.Bytes) {
		t.Errorf("signatureAlgorithm %x, want %x; signature bits %d", newOuter.Alg.FullBytes, oldOuter.Alg.FullBytes, newOuter.Sig.BitLength)
	}
	if parent == nil {
		parent = newC
	}
	if err := newC.CheckSignatureFrom(parent); err != nil {
		t.Errorf("signature: %v", err)
	}
}

// TestCACertificate checks the CA's content directly, not only against
// the old encoder.
func TestCACertificate(t *testing.T) {
	for _, name := range []string{"", "dev", "  trimmed  ", "名前"} {
		t.Run(strconv.Quote(name), func(t *testing.T) {
			before := time.Now().Truncate(time.Second)
			a, err := newAuthority(name)
			if err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			c, err := x509.ParseCertificate(a.certDER)
			if err != nil {
				t.Fatal(err)
			}
			if block, _ := pem.Decode(a.certPEM); block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, a.certDER) {
				t.Errorf("certPEM does not hold certDER")
			}
			wantCN := strings.TrimSpace("nemoclaw sandbox CA " + name)
			if c.Subject.CommonName != wantCN || !reflect.DeepEqual(c.Subject.Organization, []string{"nemoclaw"}) || len(c.Subject.Names) != 2 {
				t.Errorf("subject %v, want CN %q O nemoclaw", c.Subject, wantCN)
			}
			if !bytes.Equal(c.RawIssuer, c.RawSubject) {
				t.Errorf("issuer %v != subject %v", c.Issuer, c.Subject)
			}
			if c.Version != 3 || c.SerialNumber.Sign() < 0 || c.SerialNumber.BitLen() > 127 {
				t.Errorf("version %d serial %v", c.Version, c.SerialNumber)
			}
			if !c.BasicConstraintsValid || !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("basic constraints valid %v CA %v maxPathLen %d zero %v", c.BasicConstraintsValid, c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
			}
			if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
				t.Errorf("key usage %b, want %b", c.KeyUsage, want)
			}
			if len(c.ExtKeyUsage) != 0 || len(c.DNSNames) != 0 || len(c.IPAddresses) != 0 || len(c.AuthorityKeyId) != 0 {
				t.Errorf("unexpected EKU %v, SANs %v %v, AKI %x", c.ExtKeyUsage, c.DNSNames, c.IPAddresses, c.AuthorityKeyId)
			}
			critical := map[string]bool{}
			for _, e := range c.Extensions {
				critical[e.Id.String()] = e.Critical
			}
			if want := map[string]bool{"2.5.29.15": true, "2.5.29.19": true, "2.5.29.14": false}; !reflect.DeepEqual(critical, want) {
				t.Errorf("extensions (OID: critical) %v, want %v", critical, want)
			}
			if !c.NotBefore.Equal(c.NotBefore.Truncate(time.Second)) ||
				c.NotBefore.Before(before.Add(-time.Hour)) || c.NotBefore.After(after.Add(-time.Hour)) ||
				c.NotAfter.Before(before.AddDate(1, 0, 0)) || c.NotAfter.After(after.AddDate(1, 0, 0)) {
				t.Errorf("validity %v .. %v, made between %v and %v", c.NotBefore, c.NotAfter, before, after)
			}
			// The SKI is what x509.CreateCertificate derives for a CA since
			// Go 1.25 (RFC 7093 method 1): the leftmost 160 bits of the
			// SHA-256 of the subjectPublicKey bits.
			point, _ := a.key.PublicKey.Bytes()
			if sum := sha256.Sum256(point); !bytes.Equal(c.SubjectKeyId, sum[:20]) {
				t.Errorf("SKI %x, want %x", c.SubjectKeyId, sum[:20])
			}
			if !a.key.PublicKey.Equal(c.PublicKey) || c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
				t.Errorf("public key or signature algorithm (%v) wrong", c.SignatureAlgorithm)
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("self-signature: %v", err)
			}
		})
	}
}

// TestLeafCertificate checks leaves for a DNS name and IP literals: they
// verify against a pool holding only the CA, for their own name only.
func TestLeafCertificate(t *testing.T) {
	a, pool := testAuthority(t, "leaf")
	caCert, _ := x509.ParseCertificate(a.certDER)
	for _, tc := range []struct {
		host, other string
		ip          net.IP // nil: a DNS name
	}{
		{"api.example.com", "www.example.com", nil},
		{"192.0.2.7", "192.0.2.8", net.IP{192, 0, 2, 7}},
		{"2001:db8::7", "2001:db8::8", net.ParseIP("2001:db8::7")},
		{"::ffff:192.0.2.9", "192.0.2.10", net.IP{192, 0, 2, 9}},
	} {
		t.Run(tc.host, func(t *testing.T) {
			before := time.Now().Truncate(time.Second)
			tc1, err := a.leaf(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			if len(tc1.Certificate) != 2 || !bytes.Equal(tc1.Certificate[1], a.certDER) || tc1.PrivateKey != a.leafKey {
				t.Fatalf("chain or key wrong: %d certificates", len(tc1.Certificate))
			}
			c, err := x509.ParseCertificate(tc1.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tc1.Leaf) {
				t.Errorf("Leaf is not the parse of the leaf certificate")
			}
			if c.Subject.CommonName != tc.host || len(c.Subject.Names) != 1 || !bytes.Equal(c.RawIssuer, caCert.RawSubject) {
				t.Errorf("subject %v issuer %v", c.Subject, c.Issuer)
			}
			if tc.ip != nil {
				if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(tc.ip) || len(c.IPAddresses[0]) != len(tc.ip) || len(c.DNSNames) != 0 {
					t.Errorf("SAN IPs %v (%d bytes), DNS %v; want %v", c.IPAddresses, len(c.IPAddresses[0]), c.DNSNames, tc.ip)
				}
			} else if !reflect.DeepEqual(c.DNSNames, []string{tc.host}) || len(c.IPAddresses) != 0 {
				t.Errorf("SAN DNS %v IPs %v", c.DNSNames, c.IPAddresses)
			}
			if c.IsCA || c.BasicConstraintsValid || c.KeyUsage != x509.KeyUsageDigitalSignature ||
				!reflect.DeepEqual(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
				t.Errorf("CA %v BC %v KU %b EKU %v", c.IsCA, c.BasicConstraintsValid, c.KeyUsage, c.ExtKeyUsage)
			}
			if len(c.AuthorityKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, caCert.SubjectKeyId) || len(c.SubjectKeyId) != 0 {
				t.Errorf("AKI %x, CA SKI %x, SKI %x", c.AuthorityKeyId, caCert.SubjectKeyId, c.SubjectKeyId)
			}
			if c.NotBefore.Before(before.Add(-time.Hour)) || c.NotBefore.After(after.Add(-time.Hour)) ||
				c.NotAfter.Before(before.Add(7*24*time.Hour)) || c.NotAfter.After(after.Add(7*24*time.Hour)) {
				t.Errorf("validity %v .. %v", c.NotBefore, c.NotAfter)
			}
			if !a.leafKey.PublicKey.Equal(c.PublicKey) {
				t.Errorf("leaf public key is not the leaf key's")
			}
			opts := x509.VerifyOptions{Roots: pool, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
			if _, err := c.Verify(opts); err != nil {
				t.Errorf("verify for %s: %v", tc.host, err)
			}
			opts.DNSName = tc.other
			if _, err := c.Verify(opts); err == nil {
				t.Errorf("verified for %s too", tc.other)
			}
			opts.DNSName, opts.Roots = tc.host, x509.NewCertPool()
			if _, err := c.Verify(opts); err == nil {
				t.Errorf("verified without the CA")
			}
			if again, _ := a.leaf(tc.host); again != tc1 {
				t.Errorf("second leaf(%q) was not the cached certificate", tc.host)
			}
		})
	}
	if _, err := a.leaf("bücher.example"); err == nil {
		t.Errorf("non-ASCII host minted, but a dNSName is an IA5String")
	}
}

// TestDERBuilder checks the encoder's primitives against encoding/asn1,
// long-form lengths included.
func TestDERBuilder(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 251, 252, 253, 1000, 65000} {
		var d derBuilder
		d.add(tagSequence, func(d *derBuilder) { d.bytes(tagOctetString, make([]byte, n)) })
		want, _ := asn1.Marshal(struct{ B []byte }{make([]byte, n)})
		if d.err != nil || !bytes.Equal(d.b, want) {
			t.Errorf("octet string of %d in a sequence: %x (err %v), want %x", n, d.b[:min(len(d.b), 8)], d.err, want[:min(len(want), 8)])
		}
	}
	var d derBuilder
	d.add(tagSequence, func(d *derBuilder) { d.bytes(tagOctetString, make([]byte, 70000)) })
	if d.err == nil {
		t.Errorf("an element over 64 KiB was encoded")
	}
	for _, tm := range []time.Time{
		time.Date(1949, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2049, 12, 31, 23, 59, 59, 999, time.UTC), time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("x", -3600)),
	} {
		var d derBuilder
		d.time(tm)
		want, err := asn1.Marshal(tm.UTC().Truncate(time.Second))
		if err != nil || d.err != nil || !bytes.Equal(d.b, want) {
			t.Errorf("time %v: %q (err %v), want %q (err %v)", tm, d.b, d.err, want, err)
		}
	}
	for _, s := range []string{"plain Name 1", "a*b", "a&b", "ünï", "under_score", "\xff"} {
		var d derBuilder
		d.directoryString(s)
		want, err := asn1.Marshal(s)
		if (err != nil) != (d.err != nil) || err == nil && !bytes.Equal(d.b, want) {
			t.Errorf("string %q: %x (err %v), want %x (err %v)", s, d.b, d.err, want, err)
		}
	}
}

// serveLeafTLS serves HTTPS on a loopback port with a's leaf for the name
// the client asks for, or 127.0.0.1 without SNI (as the proxy mints for
// the CONNECT target), and returns the port.
func serveLeafTLS(t *testing.T, a *authority) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		host := hi.ServerName
		if host == "" {
			host = "127.0.0.1"
		}
		return a.leaf(host)
	}}
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "intercepted") }),
		ErrorLog: log.New(io.Discard, "", 0), // openssl s_client hangs up mid-session
	}
	go srv.Serve(tls.NewListener(l, cfg))
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// TestLeafTLSHandshake runs Go's TLS client, trusting only the CA, against
// a server presenting the minted leaf, over net.Pipe.
func TestLeafTLSHandshake(t *testing.T) {
	a, pool := testAuthority(t, "tls")
	for _, tc := range []struct {
		leafFor, serverName string
		ok                  bool
	}{
		{"api.example.com", "api.example.com", true},
		{"192.0.2.1", "192.0.2.1", true},
		{"2001:db8::1", "2001:db8::1", true},
		{"api.example.com", "evil.example.com", false},
	} {
		t.Run(tc.leafFor+"/"+tc.serverName, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			defer sc.Close()
			srv := tls.Server(sc, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return a.leaf(tc.leafFor) }})
			done := make(chan error, 1)
			go func() { done <- srv.Handshake(); sc.Close() }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cli := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: tc.serverName})
			err := cli.HandshakeContext(ctx)
			cc.Close()
			<-done
			if tc.ok && err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("handshake for %s succeeded with a leaf for %s", tc.serverName, tc.leafFor)
			}
		})
	}
}

// TestLeafThirdPartyClient has curl and openssl, whichever are installed,
// verify a minted leaf against the CA file the sandbox would get.
func TestLeafThirdPartyClient(t *testing.T) {
	curl, _ := exec.LookPath("curl")
	openssl, _ := exec.LookPath("openssl")
	if curl == "" && openssl == "" {
		testutil.SkipOrFail(t, "neither curl nor openssl is installed, so no third-party TLS client can check the minted certificates")
	}
	a, err := newAuthority("third party")
	if err != nil {
		t.Fatal(err)
	}
	other, err := newAuthority("other")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other.pem")
	if err := os.WriteFile(caFile, a.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherFile, other.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	port := serveLeafTLS(t, a)
	const host = "intercepted.example"
	run := func(t *testing.T, name string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir} // no proxies, no CA overrides
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if curl != "" {
		t.Run("curl", func(t *testing.T) {
			for _, tc := range []struct {
				ca   string
				addr string
				ok   bool
			}{{caFile, host, true}, {caFile, "127.0.0.1", true}, {otherFile, host, false}} {
				url := fmt.Sprintf("https://%s:%d/", tc.addr, port)
				out, err := run(t, curl, "-sS", "--noproxy", "*", "--cacert", tc.ca,
					"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, port), url)
				if tc.ok && (err != nil || out != "intercepted") {
					t.Errorf("curl %s with %s: %v: %s", url, filepath.Base(tc.ca), err, out)
				}
				if !tc.ok && err == nil {
					t.Errorf("curl %s trusted a leaf not issued by %s", url, filepath.Base(tc.ca))
				}
			}
		})
	}
	if openssl != "" {
		t.Run("openssl", func(t *testing.T) {
			for _, tc := range []struct {
				ca, name string
				ok       bool
			}{{caFile, host, true}, {caFile, "wrong.example", false}, {otherFile, host, false}} {
				out, err := run(t, openssl, "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", port),
					"-servername", host, "-verify_hostname", tc.name, "-CAfile", tc.ca, "-verify_return_error", "-brief")
				if tc.ok && err != nil {
					t.Errorf("openssl verifying %s with %s: %v: %s", tc.name, filepath.Base(tc.ca), err, out)
				}
				if !tc.ok && err == nil {
					t.Errorf("openssl accepted %s with %s: %s", tc.name, filepath.Base(tc.ca), out)
				}
			}
		})
	}
}

// BenchmarkNewCA measures making a sandbox's interception CA: key
// generation plus the self-signed certificate, on sandbox start-up's path.
func BenchmarkNewCA(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewCA("bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeaf measures minting a leaf for a host not yet cached (a new
// name each time), the cost of a first HTTPS interception.
func BenchmarkLeaf(b *testing.B) {
	a, err := newAuthority("bench")
	if err != nil {
		b.Fatal(err)
	}
	if err := a.mintReady(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := a.leaf("h" + strconv.Itoa(i) + ".example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// testAuthority makes a CA and a pool that trusts only it.
func testAuthority(t *testing.T, name string) (*authority, *x509.CertPool) {
	t.Helper()
	a, err := newAuthority(name)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(a.certDER)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return a, pool
}
