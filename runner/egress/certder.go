package egress

// The interception CA and its leaves are DER-encoded here by hand instead
// of with x509.CreateCertificate. Besides the one ECDSA signature (about a
// quarter of its cost), CreateCertificate reflect-marshals its template
// with encoding/asn1 and then verifies the signature it has just made, and
// the CA is made on every sandbox's start-up path. Only two fixed profiles
// are needed, so the encoder is small; ca_test.go compares its
// TBSCertificates byte for byte with CreateCertificate's.

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// DER tags (universal class; constructed where DER requires it).
const (
	tagBoolean         = 0x01
	tagInteger         = 0x02
	tagBitString       = 0x03
	tagOctetString     = 0x04
	tagOID             = 0x06
	tagUTF8String      = 0x0c
	tagPrintableString = 0x13
	tagUTCTime         = 0x17
	tagGeneralizedTime = 0x18
	tagSequence        = 0x30
	tagSet             = 0x31

	tagVersion    = 0xa0 // [0] EXPLICIT, TBSCertificate.version
	tagExtensions = 0xa3 // [3] EXPLICIT, TBSCertificate.extensions
	tagKeyID      = 0x80 // [0] IMPLICIT, AuthorityKeyIdentifier.keyIdentifier
	tagDNSName    = 0x82 // [2] IMPLICIT IA5String, GeneralName.dNSName
	tagIPAddress  = 0x87 // [7] IMPLICIT OCTET STRING, GeneralName.iPAddress
)

// Object identifiers, as the contents octets of an OBJECT IDENTIFIER.
var (
	oidECDSAWithSHA256 = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02} // 1.2.840.10045.4.3.2
	oidECPublicKey     = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01}       // 1.2.840.10045.2.1
	oidP256            = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07} // 1.2.840.10045.3.1.7
	oidCommonName      = []byte{0x55, 0x04, 0x03}                               // 2.5.4.3
	oidOrganization    = []byte{0x55, 0x04, 0x0a}                               // 2.5.4.10
	oidSubjectKeyID    = []byte{0x55, 0x1d, 0x0e}                               // 2.5.29.14
	oidKeyUsage        = []byte{0x55, 0x1d, 0x0f}                               // 2.5.29.15
	oidSubjectAltName  = []byte{0x55, 0x1d, 0x11}                               // 2.5.29.17
	oidBasicConstr     = []byte{0x55, 0x1d, 0x13}                               // 2.5.29.19
	oidAuthorityKeyID  = []byte{0x55, 0x1d, 0x23}                               // 2.5.29.35
	oidExtKeyUsage     = []byte{0x55, 0x1d, 0x25}                               // 2.5.29.37
	oidServerAuth      = []byte{0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01} // 1.3.6.1.5.5.7.3.1
)

// KeyUsage BIT STRINGs exactly as crypto/x509 encodes them: bit 0 first,
// trailing zero bits dropped, the count of unused bits in front.
var (
	keyUsageCA   = []byte{0x01, 0x86} // digitalSignature, keyCertSign, cRLSign
	keyUsageLeaf = []byte{0x07, 0x80} // digitalSignature
)

// derBuilder appends DER to b. Each method writes one complete element; the
// first error sticks in err and later writes are then harmless.
type derBuilder struct {
	b   []byte
	err error
}

// header appends a tag and the minimal DER length n.
func (d *derBuilder) header(tag byte, n int) {
	d.b = append(d.b, tag)
	switch {
	case n < 0x80:
		d.b = append(d.b, byte(n))
	case n < 0x100:
		d.b = append(d.b, 0x81, byte(n))
	case n < 0x10000:
		d.b = append(d.b, 0x82, byte(n>>8), byte(n))
	default: // certificates here stay far below 64 KiB
		d.fail(errors.New("certificate element over 64 KiB"))
	}
}

// add appends a constructed element whose contents body appends. DER
// lengths are minimal, so one length byte is reserved and the contents are
// shifted when the length turns out to need more.
func (d *derBuilder) add(tag byte, body func(*derBuilder)) {
	d.b = append(d.b, tag, 0)
	start := len(d.b)
	body(d)
	n := len(d.b) - start
	if n < 0x80 {
		d.b[start-1] = byte(n)
		return
	}
	k := 1
	if n >= 0x100 {
		k = 2
	}
	if n >= 0x10000 {
		d.fail(errors.New("certificate element over 64 KiB"))
		return
	}
	d.b = append(d.b, make([]byte, k)...)
	copy(d.b[start+k:], d.b[start:start+n])
	d.b[start-1] = 0x80 | byte(k)
	if k == 2 {
		d.b[start] = byte(n >> 8)
	}
	d.b[start+k-1] = byte(n)
}

// bytes appends a primitive element with contents v.
func (d *derBuilder) bytes(tag byte, v []byte) {
	d.header(tag, len(v))
	d.b = append(d.b, v...)
}

// fail records err unless an earlier error is already recorded.
func (d *derBuilder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// uint appends a non-negative INTEGER given in big-endian bytes.
func (d *derBuilder) uint(v []byte) {
	for len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	switch {
	case len(v) == 0:
		d.b = append(d.b, tagInteger, 1, 0)
	case v[0]&0x80 != 0: // a leading zero keeps it positive
		d.header(tagInteger, len(v)+1)
		d.b = append(d.b, 0)
		d.b = append(d.b, v...)
	default:
		d.bytes(tagInteger, v)
	}
}

// bitString appends a BIT STRING of whole bytes.
func (d *derBuilder) bitString(v []byte) {
	d.header(tagBitString, len(v)+1)
	d.b = append(d.b, 0)
	d.b = append(d.b, v...)
}

// directoryString appends s as encoding/asn1 does for an untagged string,
// which is what crypto/x509 writes in names: a PrintableString when every
// byte is in that set (without '*' and '&'), else a UTF8String; invalid
// UTF-8 is an error.
func (d *derBuilder) directoryString(s string) {
	tag := byte(tagPrintableString)
	for i := 0; i < len(s); i++ {
		if !printable(s[i]) {
			tag = tagUTF8String
			break
		}
	}
	if tag == tagUTF8String && !utf8.ValidString(s) {
		d.fail(fmt.Errorf("%q is not valid UTF-8", s))
		return
	}
	d.header(tag, len(s))
	d.b = append(d.b, s...)
}

// printable reports whether b may appear in a PrintableString.
func printable(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		'\'' <= b && b <= ')' || '+' <= b && b <= '/' ||
		b == ' ' || b == ':' || b == '=' || b == '?'
}

// time appends t in UTC with seconds precision: a UTCTime for 1950
// through 2049, else a GeneralizedTime (RFC 5280, section 4.1.2.5).
func (d *derBuilder) time(t time.Time) {
	t = t.UTC()
	year := t.Year()
	switch {
	case 1950 <= year && year < 2050:
		d.header(tagUTCTime, 13)
		d.b = appendDigits(d.b, year%100, 2)
	case 0 <= year && year <= 9999:
		d.header(tagGeneralizedTime, 15)
		d.b = appendDigits(d.b, year, 4)
	default:
		d.fail(fmt.Errorf("time %v out of range", t))
		return
	}
	_, month, day := t.Date()
	hour, min, sec := t.Clock()
	d.b = appendDigits(d.b, int(month), 2)
	d.b = appendDigits(d.b, day, 2)
	d.b = appendDigits(d.b, hour, 2)
	d.b = appendDigits(d.b, min, 2)
	d.b = appendDigits(d.b, sec, 2)
	d.b = append(d.b, 'Z')
}

// appendDigits appends v (0 <= v < 10000) in decimal, zero-padded to
// width digits (2 or 4).
func appendDigits(b []byte, v, width int) []byte {
	if width == 4 {
		b = append(b, byte('0'+v/1000), byte('0'+v/100%10))
	}
	return append(b, byte('0'+v/10%10), byte('0'+v%10))
}

// name appends an RDNSequence in the order pkix.Name.ToRDNSequence uses,
// O then CN, each attribute in its own RDN; an empty value is left out.
func (d *derBuilder) name(org, cn string) {
	d.add(tagSequence, func(d *derBuilder) {
		d.attribute(oidOrganization, org)
		d.attribute(oidCommonName, cn)
	})
}

// attribute appends one single-valued RDN, unless value is empty.
func (d *derBuilder) attribute(oid []byte, value string) {
	if value == "" {
		return
	}
	d.add(tagSet, func(d *derBuilder) {
		d.add(tagSequence, func(d *derBuilder) {
			d.bytes(tagOID, oid)
			d.directoryString(value)
		})
	})
}

// extension appends an Extension whose extnValue body appends.
func (d *derBuilder) extension(oid []byte, critical bool, body func(*derBuilder)) {
	d.add(tagSequence, func(d *derBuilder) {
		d.bytes(tagOID, oid)
		if critical {
			d.b = append(d.b, tagBoolean, 1, 0xff)
		}
		d.add(tagOctetString, body)
	})
}

// sigAlg appends the AlgorithmIdentifier of ecdsa-with-SHA256 (no
// parameters, RFC 5758).
func (d *derBuilder) sigAlg() {
	d.add(tagSequence, func(d *derBuilder) { d.bytes(tagOID, oidECDSAWithSHA256) })
}

// certificate appends a Certificate whose TBSCertificate contents tbs
// appends (version, serial and signature algorithm are written here),
// signed by signer with ECDSA over SHA-256. The signature is made once
// and not verified again: the key and the message are both our own.
func (d *derBuilder) certificate(signer *ecdsa.PrivateKey, serial []byte, tbs func(*derBuilder)) {
	d.add(tagSequence, func(d *derBuilder) {
		start := len(d.b)
		d.add(tagSequence, func(d *derBuilder) {
			d.add(tagVersion, func(d *derBuilder) { d.uint([]byte{2}) }) // v3
			d.uint(serial)
			d.sigAlg()
			tbs(d)
		})
		if d.err != nil {
			return
		}
		h := sha256.Sum256(d.b[start:])
		sig, err := ecdsa.SignASN1(rand.Reader, signer, h[:])
		if err != nil {
			d.fail(fmt.Errorf("sign: %w", err))
			return
		}
		d.sigAlg()
		d.bitString(sig)
	})
}

// spki appends the SubjectPublicKeyInfo of a P-256 key given as its
// uncompressed point.
func (d *derBuilder) spki(point []byte) {
	d.add(tagSequence, func(d *derBuilder) {
		d.add(tagSequence, func(d *derBuilder) {
			d.bytes(tagOID, oidECPublicKey)
			d.bytes(tagOID, oidP256)
		})
		d.bitString(point)
	})
}

// validity appends a Validity.
func (d *derBuilder) validity(notBefore, notAfter time.Time) {
	d.add(tagSequence, func(d *derBuilder) {
		d.time(notBefore)
		d.time(notAfter)
	})
}

// caSKI is the CA's subject key identifier as crypto/x509 (Go 1.25 and
// later) derives it when a CA template has none: the leftmost 160 bits of
// the SHA-256 of the subjectPublicKey bits (RFC 7093, section 2, method 1).
func caSKI(point []byte) []byte {
	h := sha256.Sum256(point)
	return h[:20]
}

// encodeCA returns the DER of the self-signed CA certificate for key,
// with the content x509.CreateCertificate gives the template in
// newAuthority: subject and issuer O "nemoclaw" and CN cn; critical
// KeyUsage certSign|cRLSign|digitalSignature; critical BasicConstraints
// CA:TRUE, pathlen 0; SubjectKeyIdentifier.
func encodeCA(key *ecdsa.PrivateKey, serial []byte, cn string, notBefore, notAfter time.Time) ([]byte, error) {
	point, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	d := derBuilder{b: make([]byte, 0, 512)}
	d.certificate(key, serial, func(d *derBuilder) {
		d.name("nemoclaw", cn) // issuer
		d.validity(notBefore, notAfter)
		d.name("nemoclaw", cn) // subject
		d.spki(point)
		d.add(tagExtensions, func(d *derBuilder) {
			d.add(tagSequence, func(d *derBuilder) {
				d.extension(oidKeyUsage, true, func(d *derBuilder) { d.bytes(tagBitString, keyUsageCA) })
				d.extension(oidBasicConstr, true, func(d *derBuilder) {
					d.add(tagSequence, func(d *derBuilder) {
						d.b = append(d.b, tagBoolean, 1, 0xff) // cA
						d.uint(nil)                            // pathLenConstraint 0
					})
				})
				d.extension(oidSubjectKeyID, false, func(d *derBuilder) { d.bytes(tagOctetString, caSKI(point)) })
			})
		})
	})
	return d.b, d.err
}

// encodeLeaf returns the DER of a server certificate for host signed by
// caKey, with the content x509.CreateCertificate gives the template in
// leaf: issuer the CA's DER Name as is, subject CN host; critical KeyUsage
// digitalSignature; ExtKeyUsage serverAuth; AuthorityKeyIdentifier aki;
// SubjectAltName ip when valid (4 bytes for IPv4, IPv4-mapped included),
// else dNSName host.
func encodeLeaf(caKey *ecdsa.PrivateKey, serial, issuer, aki []byte, host string, ip []byte, notBefore, notAfter time.Time, point []byte) ([]byte, error) {
	if ip == nil {
		for i := 0; i < len(host); i++ {
			if host[i] >= utf8.RuneSelf {
				return nil, fmt.Errorf("%q cannot be encoded as an IA5String", host)
			}
		}
	}
	d := derBuilder{b: make([]byte, 0, 512+2*len(host))}
	d.certificate(caKey, serial, func(d *derBuilder) {
		d.b = append(d.b, issuer...)
		d.validity(notBefore, notAfter)
		d.name("", host)
		d.spki(point)
		d.add(tagExtensions, func(d *derBuilder) {
			d.add(tagSequence, func(d *derBuilder) {
				d.extension(oidKeyUsage, true, func(d *derBuilder) { d.bytes(tagBitString, keyUsageLeaf) })
				d.extension(oidExtKeyUsage, false, func(d *derBuilder) {
					d.add(tagSequence, func(d *derBuilder) { d.bytes(tagOID, oidServerAuth) })
				})
				if len(aki) > 0 {
					d.extension(oidAuthorityKeyID, false, func(d *derBuilder) {
						d.add(tagSequence, func(d *derBuilder) { d.bytes(tagKeyID, aki) })
					})
				}
				// RFC 5280, section 4.2.1.6: critical when the subject is empty.
				d.extension(oidSubjectAltName, host == "", func(d *derBuilder) {
					d.add(tagSequence, func(d *derBuilder) {
						if ip != nil {
							d.bytes(tagIPAddress, ip)
						} else {
							d.header(tagDNSName, len(host))
							d.b = append(d.b, host...)
						}
					})
				})
			})
		})
	})
	return d.b, d.err
}
