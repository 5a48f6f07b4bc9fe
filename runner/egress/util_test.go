package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
)

type contextT = context.Context

func tlsConfig(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
