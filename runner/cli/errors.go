package cli

import "errors"

// asError is errors.As, kept in one place so call sites stay short.
func asError[T error](err error, target *T) bool { return errors.As(err, target) }
