package cli

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSignalRelayDeliver(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sig        os.Signal
		subscribed bool
		withCtx    bool
		wantSub    bool // the sandbox gets it
		wantCancel bool // Main's context is cancelled
		wantRaise  bool // default handling
	}{
		{name: "running sandbox gets SIGINT", sig: syscall.SIGINT, subscribed: true, withCtx: true, wantSub: true},
		{name: "running sandbox gets SIGTERM, context stays", sig: syscall.SIGTERM, subscribed: true, withCtx: true, wantSub: true},
		{name: "running sandbox gets SIGWINCH", sig: syscall.SIGWINCH, subscribed: true, wantSub: true},
		{name: "no sandbox: SIGTERM cancels Main's context", sig: syscall.SIGTERM, withCtx: true, wantCancel: true},
		{name: "no sandbox, no context: SIGTERM acts by default", sig: syscall.SIGTERM, wantRaise: true},
		{name: "no sandbox: SIGINT acts by default", sig: syscall.SIGINT, withCtx: true, wantRaise: true},
		{name: "no sandbox: SIGHUP acts by default", sig: syscall.SIGHUP, wantRaise: true},
		{name: "no sandbox: SIGWINCH is dropped", sig: syscall.SIGWINCH, withCtx: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var raised []os.Signal
			r := &signalRelay{raise: func(s os.Signal) { raised = append(raised, s) }}
			r.once.Do(func() {}) // no real subscription: deliver is driven directly
			r.ready = make(chan struct{})
			close(r.ready)
			ctx, stop := r.context()
			defer stop()
			if !tc.withCtx {
				r.cancel = nil
			}
			ch := make(chan os.Signal, 1)
			if tc.subscribed {
				defer r.subscribe(ch)()
			}
			r.deliver(tc.sig)
			select {
			case got := <-ch:
				if !tc.wantSub || got != tc.sig {
					t.Errorf("sandbox got %v, want it: %v", got, tc.wantSub)
				}
			default:
				if tc.wantSub {
					t.Errorf("sandbox did not get %v", tc.sig)
				}
			}
			if cancelled := ctx.Err() != nil; cancelled != tc.wantCancel {
				t.Errorf("context cancelled = %v, want %v", cancelled, tc.wantCancel)
			}
			if got := len(raised) == 1 && raised[0] == tc.sig; got != tc.wantRaise || len(raised) > 1 {
				t.Errorf("raised %v, want default handling: %v", raised, tc.wantRaise)
			}
		})
	}
}

func TestSignalRelayUnsubscribe(t *testing.T) {
	var raised []os.Signal
	r := &signalRelay{raise: func(s os.Signal) { raised = append(raised, s) }}
	r.once.Do(func() {})
	r.ready = make(chan struct{})
	close(r.ready)
	ch := make(chan os.Signal, 1)
	r.subscribe(ch)()
	r.deliver(syscall.SIGINT)
	if len(ch) != 0 || len(raised) != 1 {
		t.Fatalf("after unsubscribe: sandbox got %d signals, default handling for %v; want 0 and [interrupt]", len(ch), raised)
	}
}

// TestSignalRelayRealSignal sends a real signal to this process through a
// relay subscribed with os/signal.
func TestSignalRelayRealSignal(t *testing.T) {
	// raise outlives the test (the subscription stays): it must not use t.
	r := &signalRelay{raise: func(os.Signal) {}}
	ch := make(chan os.Signal, 1)
	defer r.subscribe(ch)()
	r.wait()
	if err := syscall.Kill(os.Getpid(), syscall.SIGWINCH); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-ch:
		if s != syscall.SIGWINCH {
			t.Fatalf("got %v, want SIGWINCH", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGWINCH sent to this process never reached the subscriber")
	}
}
