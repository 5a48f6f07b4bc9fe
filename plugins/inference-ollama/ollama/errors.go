package ollama

import (
	"errors"
	"fmt"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// isSDKError reports whether err already is (or wraps) an *sdk.Error, which
// passes to the router as it is.
func isSDKError(err error) bool {
	var se *sdk.Error
	return errors.As(err, &se)
}

// badRequest is a 400 for a request this backend cannot translate.
func badRequest(format string, args ...any) error {
	return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: "ollama: " + fmt.Sprintf(format, args...)}
}
