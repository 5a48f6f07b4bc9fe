// Passing the launcher's signals on to a sandbox (signals.go). The handlers
// are plain C, installed over the Go runtime's for five asynchronous
// signals while a sandbox runs: os/signal enables each signal with round
// trips to a runtime thread it must first start, which cost a sandbox's
// start-up about 0.6 ms (more on a busy machine), and a handler needs none.
// A handler only makes system calls, so it is safe on any thread; it runs on
// the thread's alternate signal stack (SA_ONSTACK), as the Go runtime
// requires of handlers it did not install.

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

static const int fwd_sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};
#define NFWD ((int)(sizeof fwd_sigs / sizeof fwd_sigs[0]))

static int fwd_pidfd = -1; // the sandbox's init; -1 while signals are held
static int fwd_ptm = -1;   // the sandbox's pseudo-terminal, for SIGWINCH
static int fwd_tty = -1;   // the launcher's terminal, whose size it copies
static int fwd_held[NFWD];
static struct sigaction fwd_saved[NFWD];
static int fwd_caught;

static void fwd_deliver(int i)
{
	if (fwd_sigs[i] == SIGWINCH) {
		int ptm = __atomic_load_n(&fwd_ptm, __ATOMIC_ACQUIRE);
		int tty = __atomic_load_n(&fwd_tty, __ATOMIC_ACQUIRE);
		struct winsize ws;
		if (ptm >= 0 && tty >= 0 && ioctl(tty, TIOCGWINSZ, &ws) == 0)
			ioctl(ptm, TIOCSWINSZ, &ws); // the kernel signals the agent's foreground job
		return;
	}
	// The init passes it to the agent's process group.
	syscall(SYS_pidfd_send_signal, __atomic_load_n(&fwd_pidfd, __ATOMIC_ACQUIRE), fwd_sigs[i], NULL, 0);
}

static void fwd_handler(int sig)
{
	int saved_errno = errno;
	for (int i = 0; i < NFWD; i++) {
		if (fwd_sigs[i] != sig)
			continue;
		if (__atomic_load_n(&fwd_pidfd, __ATOMIC_ACQUIRE) >= 0) {
			fwd_deliver(i);
			break;
		}
		// nc_sig_forward may set the target meanwhile: whoever clears the
		// flag delivers, so the signal goes exactly once. Sequentially
		// consistent, this store and the load after it, as in
		// nc_sig_forward: with release/acquire a CPU may perform the load
		// first (store-load reordering), each side then misses the other,
		// and the signal stays held forever.
		__atomic_store_n(&fwd_held[i], 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&fwd_pidfd, __ATOMIC_SEQ_CST) >= 0 && __atomic_exchange_n(&fwd_held[i], 0, __ATOMIC_SEQ_CST))
			fwd_deliver(i);
		break;
	}
	errno = saved_errno;
}

// nc_sig_catch installs the handlers; signals are held until
// nc_sig_forward. It returns 0 or -errno.
int nc_sig_catch(void)
{
	if (fwd_caught)
		return -EBUSY;
	struct sigaction sa = {0};
	sa.sa_handler = fwd_handler;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	sigfillset(&sa.sa_mask);
	for (int i = 0; i < NFWD; i++) {
		__atomic_store_n(&fwd_held[i], 0, __ATOMIC_RELEASE);
		if (sigaction(fwd_sigs[i], &sa, &fwd_saved[i]) < 0) {
			int e = errno;
			while (--i >= 0)
				sigaction(fwd_sigs[i], &fwd_saved[i], NULL);
			return -e;
		}
	}
	fwd_caught = 1;
	return 0;
}

// nc_sig_forward sends the held signals and those to come to the init
// behind pidfd; SIGWINCH copies tty's size to ptm (either may be -1).
void nc_sig_forward(int pidfd, int ptm, int tty)
{
	__atomic_store_n(&fwd_ptm, ptm, __ATOMIC_RELEASE);
	__atomic_store_n(&fwd_tty, tty, __ATOMIC_RELEASE);
	__atomic_store_n(&fwd_pidfd, pidfd, __ATOMIC_SEQ_CST); // see fwd_handler
	// SIGWINCH goes whether or not it was held: the terminal's size then
	// reaches the sandbox even if a resize's signal from before this point
	// did not (one in a few hundred interactive starts under heavy load
	// lost it; every later one arrives live).
	for (int i = 0; i < NFWD; i++)
		if (__atomic_exchange_n(&fwd_held[i], 0, __ATOMIC_SEQ_CST) || fwd_sigs[i] == SIGWINCH)
			fwd_deliver(i);
}

// nc_sig_held reports whether sig arrived and is being held (for tests).
int nc_sig_held(int sig)
{
	for (int i = 0; i < NFWD; i++)
		if (fwd_sigs[i] == sig)
			return __atomic_load_n(&fwd_held[i], __ATOMIC_ACQUIRE);
	return 0;
}

// nc_sig_release puts back the handlers nc_sig_catch replaced, but for
// SIGHUP when ignore_hup is set: that one is then ignored. Signals still
// held are dropped: their sandbox never started.
void nc_sig_release(int ignore_hup)
{
	if (!fwd_caught)
		return;
	for (int i = 0; i < NFWD; i++) {
		if (ignore_hup && fwd_sigs[i] == SIGHUP) {
			struct sigaction ign = {0};
			ign.sa_handler = SIG_IGN;
			sigaction(SIGHUP, &ign, NULL);
			continue;
		}
		sigaction(fwd_sigs[i], &fwd_saved[i], NULL);
	}
	__atomic_store_n(&fwd_pidfd, -1, __ATOMIC_RELEASE);
	__atomic_store_n(&fwd_ptm, -1, __ATOMIC_RELEASE);
	__atomic_store_n(&fwd_tty, -1, __ATOMIC_RELEASE);
	fwd_caught = 0;
}
