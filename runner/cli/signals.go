package cli

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// forwardedSignals are the signals a sandbox run passes to its agent
// (SIGWINCH resizes its terminal instead).
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGWINCH}

// signalRelay owns a sandbox-launching process's signals. os/signal
// enables and disables each signal with a round trip to a runtime thread
// that it first has to start (Notify and Stop both pay it, per signal),
// which measured about 0.4 ms of `sandbox run`'s start-up path. The relay
// subscribes once, in the background while the command line is parsed,
// and a run then only switches where the signals go.
type signalRelay struct {
	once  sync.Once
	ready chan struct{} // closed once signal.Notify has returned

	mu     sync.Mutex
	sub    chan<- os.Signal   // the running sandbox's; nil when none runs
	cancel context.CancelFunc // Main's context: SIGTERM cancels it while no sandbox runs
	// raise gives a signal its default effect (the process's own
	// handling without the relay); a test replaces it.
	raise func(os.Signal)
}

// relay is the process's signal relay.
var relay = signalRelay{raise: raiseDefault}

// start subscribes the relay to forwardedSignals, in the background, once.
func (r *signalRelay) start() {
	r.once.Do(func() {
		r.ready = make(chan struct{})
		go func() {
			ch := make(chan os.Signal, 16)
			signal.Notify(ch, forwardedSignals...)
			close(r.ready)
			for s := range ch {
				r.deliver(s)
			}
		}()
	})
}

// deliver routes one signal: to the running sandbox, else SIGTERM cancels
// Main's context, SIGWINCH is dropped, and the rest act as they would
// without the relay.
func (r *signalRelay) deliver(s os.Signal) {
	r.mu.Lock()
	sub, cancel, raise := r.sub, r.cancel, r.raise
	r.mu.Unlock()
	switch {
	case sub != nil:
		select {
		case sub <- s:
		default: // a full buffer drops the signal, as signal.Notify does
		}
	case s == syscall.SIGWINCH:
	case s == syscall.SIGTERM && cancel != nil:
		cancel()
	default:
		raise(s)
	}
}

// raiseDefault restores s's default handling and sends it again.
func raiseDefault(s os.Signal) {
	signal.Reset(s)
	if sig, ok := s.(syscall.Signal); ok {
		_ = syscall.Kill(os.Getpid(), sig)
	}
}

// context returns Main's context for a sandbox-launching command: SIGTERM
// cancels it while no sandbox runs (what signal.NotifyContext would do).
// stop detaches it.
func (r *signalRelay) context() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	r.cancel = cancel
	r.mu.Unlock()
	r.start()
	return ctx, func() {
		r.mu.Lock()
		r.cancel = nil
		r.mu.Unlock()
		cancel()
	}
}

// subscribe sends forwardedSignals to ch until unsubscribe is called. It
// returns at once; after wait returns, no signal sent is missed (before,
// one may still act by default).
func (r *signalRelay) subscribe(ch chan<- os.Signal) (unsubscribe func()) {
	r.start()
	r.mu.Lock()
	r.sub = ch
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if r.sub == ch {
			r.sub = nil
		}
		r.mu.Unlock()
	}
}

// wait returns once the relay is subscribed with os/signal.
func (r *signalRelay) wait() {
	r.start()
	<-r.ready
}
