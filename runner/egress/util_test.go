package egress

import (
	"bufio"
	"net/url"
	"strconv"
	"strings"

	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

type contextT = context.Context

func tlsConfig(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

type (
	policyMatcher = policy.Matcher
	policyQuery   = policy.QueryMatcher
)

func parseQuery(s string) url.Values { v, _ := url.ParseQuery(s); return v }

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func itoa(n int) string { return strconv.Itoa(n) }
