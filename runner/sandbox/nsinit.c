// The sandbox's init, in C, run from an ELF constructor before the Go
// runtime starts (as runc's nsexec does): a re-executed nemoclaw pays for
// neither the Go runtime nor every package's init. The launcher (Go)
// computes everything and sends a flat program of operations on fd 3; this
// file only executes it, reports the first failing step on fd 4, hands the
// listening sockets back, then stays as the namespace's pid 1.
//
// Wire format of the program: records of
//   u32 opcode, u32 nargs, nargs x (u32 len, len bytes)
// little-endian. The first argument of every record is its step name.
// Keep in step with program.go.

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <poll.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
	OP_HOSTNAME = 1,
	OP_MOUNT = 2,
	OP_MKDIR = 3,
	OP_SYMLINK = 4,
	OP_MKFILE = 5,
	OP_UMOUNT = 8,
	OP_RMDIR = 9,
	OP_WRITE_OPTIONAL = 10,
	OP_LISTEN = 12,
	OP_RLIMIT = 13,
	OP_BINDFILE = 14,
	OP_DUMPABLE0 = 15,
	OP_STOP_TIMEOUT = 18,
	OP_BIND_ACCESS = 19,
	OP_PROTECT = 28,
	OP_CHOWN = 16,
	OP_BIND_WORKSPACE = 17,
	OP_LANDLOCK_RULESET = 20,
	OP_LANDLOCK_PATH = 21,
	OP_LANDLOCK_PORT = 22,
	OP_MOUNT_ATTR = 23,
	// Agent section: executed in the forked child, in order.
	OP_NNP = 30,
	OP_CAPBSET = 31,
	OP_SECUREBITS = 32,
	OP_SETIDS = 33,
	OP_CAPCLEAR = 34,
	OP_LANDLOCK_RESTRICT = 35,
	OP_SECCOMP = 36,
	OP_EXEC = 37,
	// Join requests, launcher to init on the status socket once the
	// agent runs (join.go): a process started in the running sandbox.
	OP_JOIN = 40,
	OP_JOIN_SIGNAL = 41,
};

// Landlock ABI structs, declared here because distribution headers lag the
// kernel (Debian 12's lack net ports and scoping).
struct nc_ruleset_attr {
	uint64_t handled_access_fs, handled_access_net, scoped;
};
struct nc_path_beneath_attr {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));
struct nc_net_port_attr {
	uint64_t allowed_access, port;
};
#define NC_RULE_PATH_BENEATH 1
#define NC_RULE_NET_PORT 2

// Where the host's root stays between pivot_root and its detach; keep in
// step with oldRoot in program.go.
// The new mount API, declared here for the same reason (and because glibc
// 2.36's <sys/mount.h> and <linux/mount.h> clash). Syscalls from 424 on
// have one number on every architecture.
struct nc_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#define NC_SYS_open_tree 428
#define NC_SYS_move_mount 429
#define NC_SYS_fsopen 430
#define NC_SYS_fsconfig 431
#define NC_SYS_fsmount 432
#define NC_SYS_mount_setattr 442
#define NC_OPEN_TREE_CLONE 1
#define NC_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define NC_MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#define NC_FSCONFIG_SET_STRING 1
#define NC_FSCONFIG_CMD_CREATE 6
#define NC_FSOPEN_CLOEXEC 1
#define NC_FSMOUNT_CLOEXEC 1
#define NC_MOUNT_ATTR_RDONLY 0x00000001
#define NC_MOUNT_ATTR_NOSUID 0x00000002
#define NC_MOUNT_ATTR_NODEV 0x00000004
#define NC_MOUNT_ATTR_NOEXEC 0x00000008
#define NC_MOUNT_ATTR_IDMAP 0x00100000

#define OLDROOT "/.oldroot"

#define SPEC_FD 3
#define STATUS_FD 4
#define MAX_ARGS 4096
#define MAX_FDS 8

struct arg {
	const char *p;
	uint32_t n;
};

struct op {
	uint32_t code, nargs;
	struct arg *a;
};

static struct op *ops;
static int nops;
static char notes[8192];
static size_t notes_len;

// ---- allocation -----------------------------------------------------------

// The init never calls libc's malloc: the pre-spawned init (below) is a raw
// clone, which runs none of libc's fork handlers, so libc's internal state
// (malloc's locks and arenas) is not fit for use in it. A bump allocator
// over mmap has no locks; the init runs its program once, so nothing is
// ever freed.
struct nc_hdr {
	size_t n;
	size_t pad;
};
static char *arena;
static size_t arena_left;

static void *nc_alloc(size_t n)
{
	size_t need = (n + sizeof(struct nc_hdr) + 15) & ~(size_t)15;
	char *p;
	if (need > arena_left) {
		size_t chunk = need > (1 << 20) ? need : (1 << 20);
		p = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			_exit(120);
		if (chunk == need) { // a large block of its own
			((struct nc_hdr *)p)->n = n;
			return p + sizeof(struct nc_hdr);
		}
		arena = p;
		arena_left = chunk;
	}
	p = arena;
	arena += need;
	arena_left -= need;
	((struct nc_hdr *)p)->n = n;
	return p + sizeof(struct nc_hdr); // mmap memory is zeroed
}

static void *nc_realloc(void *old, size_t n)
{
	void *p = nc_alloc(n);
	if (old) {
		size_t on = ((struct nc_hdr *)old - 1)->n;
		memcpy(p, old, on < n ? on : n);
	}
	return p;
}

#define malloc(n) nc_alloc(n)
#define calloc(k, n) nc_alloc((size_t)(k) * (n))
#define realloc(p, n) nc_realloc((p), (n))
#define free(p) ((void)(p))

// strerror without glibc's translation lookup (which takes a lock): the
// init only reports errno names' descriptions, untranslated.
static const char *nc_strerror(int e)
{
	const char *d = strerrordesc_np(e);
	return d ? d : "unknown error";
}
#define strerror(e) nc_strerror(e)

// ---- small helpers -------------------------------------------------------

static char *astr(struct arg *a)
{
	char *s = malloc(a->n + 1);
	if (!s)
		_exit(120);
	memcpy(s, a->p, a->n);
	s[a->n] = 0;
	return s;
}

static uint64_t anum(struct arg *a)
{
	uint64_t v = 0;
	if (a->n == 8)
		memcpy(&v, a->p, 8);
	return v;
}

// json_str appends s as a JSON string to out.
static void json_str(char *out, size_t cap, size_t *len, const char *s)
{
	size_t l = *len;
	if (l + 2 >= cap)
		return;
	out[l++] = '"';
	for (; *s && l + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[l++] = '\\';
			out[l++] = c;
		} else if (c < 0x20) {
			l += snprintf(out + l, cap - l, "\\u%04x", c);
		} else {
			out[l++] = c;
		}
	}
	out[l++] = '"';
	out[l] = 0;
	*len = l;
}

static void note(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (notes_len)
		notes[notes_len++] = ',';
	json_str(notes, sizeof notes - 1, &notes_len, buf);
}

static void send_msg(const char *json, int *fds, int nfds)
{
	struct iovec iov = {.iov_base = (void *)json, .iov_len = strlen(json)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
	if (nfds > 0) {
		memset(cbuf, 0, sizeof cbuf);
		msg.msg_control = cbuf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	while (sendmsg(STATUS_FD, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

// fail reports step and cause on the status socket and exits.
// fail_code reports a failed step; code, when not 0, is the errno behind
// it, for the launcher to act on (an agent that cannot be exec'd exits
// 126 or 127, as from a shell).
// A hint, when not NULL, marks the step refused by policy (exit code 3,
// StepError.Refused) and says what the user can do.
__attribute__((noreturn)) static void fail_hint(const char *step, const char *cause, int code, const char *hint)
{
	char buf[4096];
	size_t l = 0;
	l += snprintf(buf, sizeof buf, "{\"error\":{\"step\":");
	json_str(buf, sizeof buf - 32, &l, step);
	l += snprintf(buf + l, sizeof buf - l, ",\"message\":");
	json_str(buf, sizeof buf - 32, &l, cause);
	if (code)
		l += snprintf(buf + l, sizeof buf - l, ",\"errno\":%d", code);
	if (hint) {
		l += snprintf(buf + l, sizeof buf - l, ",\"refused\":true,\"hint\":");
		json_str(buf, sizeof buf - 32, &l, hint);
	}
	snprintf(buf + l, sizeof buf - l, "}}");
	send_msg(buf, NULL, 0);
	_exit(1);
}

__attribute__((noreturn)) static void fail_code(const char *step, const char *cause, int code)
{
	fail_hint(step, cause, code, NULL);
}

__attribute__((noreturn)) static void fail(const char *step, const char *cause)
{
	fail_code(step, cause, 0);
}

// fail_refused reports a step of o that policy, not a fault, stopped.
__attribute__((noreturn)) static void fail_refused(struct op *o, const char *cause, const char *hint)
{
	char step[512];
	snprintf(step, sizeof step, "%.*s", (int)o->a[0].n, o->a[0].p);
	fail_hint(step, cause, 0, hint);
}

__attribute__((noreturn)) static void fail_errno(struct op *o, const char *what)
{
	char step[512], cause[1024];
	int e = errno;
	snprintf(step, sizeof step, "%.*s", (int)o->a[0].n, o->a[0].p);
	if (what && *what)
		snprintf(cause, sizeof cause, "%s: %s", what, strerror(e));
	else
		snprintf(cause, sizeof cause, "%s", strerror(e));
	fail(step, cause);
}

static void need(struct op *o, uint32_t n)
{
	if (o->nargs < n)
		fail("spec", "malformed program: too few arguments");
}

// ---- reading the program -------------------------------------------------

// The program arrives on SPEC_FD while the launcher is still planning: the
// init runs each setup operation as soon as it is whole (its mounts then
// overlap the launcher's work) and keeps the agent section, which begins
// at the first agent operation, for after EOF. The buffer is one
// reservation that never moves, so the parsed arguments stay valid.
#define PROGRAM_MAX (256u << 20)
static void run_setup_op(struct op *o);
static char *pbuf;
static size_t plen, poff;

// have makes n more bytes of the program available at poff; 0 at EOF.
static int have(size_t n)
{
	while (plen - poff < n) {
		if (plen == PROGRAM_MAX)
			fail("spec", "program too large");
		ssize_t r = read(SPEC_FD, pbuf + plen, PROGRAM_MAX - plen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail("spec: read", strerror(errno));
		if (r == 0)
			return 0;
		plen += r;
	}
	return 1;
}

// stream_program reads the program, running its setup section as it
// arrives, and returns the index of the agent section's first operation.
static int stream_program(void)
{
	pbuf = mmap(NULL, PROGRAM_MAX, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (pbuf == MAP_FAILED)
		_exit(120);
	size_t capops = 64;
	ops = calloc(capops, sizeof *ops);
	int agent_from = -1;
	for (;;) {
		if (!have(8)) {
			if (plen != poff)
				fail("spec", "malformed program: truncated");
			break;
		}
		struct op o;
		memcpy(&o.code, pbuf + poff, 4);
		memcpy(&o.nargs, pbuf + poff + 4, 4);
		poff += 8;
		if (o.nargs > MAX_ARGS)
			fail("spec", "malformed program: too many arguments");
		if (o.nargs == 0)
			fail("spec", "malformed program: operation without a step");
		o.a = calloc(o.nargs + 1, sizeof *o.a);
		for (uint32_t i = 0; i < o.nargs; i++) {
			if (!have(4))
				fail("spec", "malformed program: truncated");
			memcpy(&o.a[i].n, pbuf + poff, 4);
			poff += 4;
			if (!have(o.a[i].n))
				fail("spec", "malformed program: truncated argument");
			o.a[i].p = pbuf + poff;
			poff += o.a[i].n;
		}
		if ((size_t)nops == capops) {
			capops *= 2;
			ops = realloc(ops, capops * sizeof *ops);
		}
		ops[nops++] = o;
		if (agent_from < 0 && o.code >= OP_NNP)
			agent_from = nops - 1;
		if (agent_from < 0)
			run_setup_op(&ops[nops - 1]);
	}
	close(SPEC_FD);
	if (nops == 0)
		fail("spec", "malformed program");
	if (agent_from < 0)
		fail("spec", "program has no agent section");
	return agent_from;
}

// ---- operations ------------------------------------------------------------

static int fds[MAX_FDS];
static char fdnames[1024];
static size_t fdnames_len;
static int nfds;
static int ruleset = -1;
// How long the agent has after a SIGTERM before everything in the sandbox
// is killed (OP_STOP_TIMEOUT), in milliseconds; -1: no limit.
static int64_t stop_timeout_ms = -1;

static int own_dir(const char *p)
{
	return !strncmp(p, "/tmp/", 5) || !strncmp(p, "/run/", 5) || !strncmp(p, "/dev/shm/", 9) ||
	       strchr(p + 1, '/') == NULL;
}

static void mkdir_p(char *path)
{
	for (char *s = path + 1; *s; s++) {
		if (*s == '/') {
			*s = 0;
			mkdir(path, 0755);
			*s = '/';
		}
	}
}

// write_all writes n bytes of p to fd.
static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

// op_bindfile places a file's contents (sent in the program) read-only at
// dst: it writes them to a staging file on the sandbox's own /run tmpfs,
// binds that over dst, and unlinks the staging name (the mount keeps the
// inode). Nothing touches the host's disk.
#define STAGING "/run/.nemoclaw-files"
// ---- prefetch ----------------------------------------------------------------
//
// The host file a sandbox is usually given to extend (sandbox.File.From:
// the system CA bundle, ~200 KB, which egress.SystemCABundle picks from the
// same list) is copied by the pre-spawned init while it waits for the
// launcher, into /dev/shm's tmpfs (not the root's, which is remounted
// read-only at the end: a bound, unlinked file there would make that
// EBUSY); op_bindfile then only appends the
// launcher's data. The copy is used only if it is of the very file the
// program names, unchanged (device, inode, size and mtime), and it goes
// when the host's root is detached.
// HOST_FILE_OPEN opens a host file the init copies (a File.From, the CA
// bundle): a FIFO or device node found there instead (something left by
// an agent, in a directory a policy lets it write) must neither block the
// init (a FIFO without a writer) nor become its terminal; fstat then
// refuses anything but a regular file.
#define HOST_FILE_OPEN (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
static const char *prefetch_paths[] = {
	"etc/ssl/certs/ca-certificates.crt", "etc/pki/tls/certs/ca-bundle.crt", "etc/ssl/ca-bundle.pem", "etc/ssl/cert.pem",
};
#define PREFETCH "/dev/shm/.nemoclaw-prefetch"
static struct stat prefetch_st;
static int prefetched;

static int copy_fd(int out, int in, off_t size)
{
	while (size > 0) {
		ssize_t n = sendfile(out, in, NULL, size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		size -= n;
	}
	return 0;
}

// nc_openat2 is openat2(2), through which every path the init must not
// let a symlink steer is opened: prefetch's host files, and the policy's
// paths inside agent-writable trees (open_policy_path).
static int nc_openat2(int dirfd, const char *path, uint64_t flags, uint64_t resolve)
{
	struct open_how how = {.flags = flags, .resolve = resolve};
	return syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

// prefetch copies the first of prefetch_paths that is a regular file under
// the old root, resolving its symlinks as the host would.
static void prefetch(void)
{
	int root = open(OLDROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return;
	for (size_t i = 0; i < sizeof prefetch_paths / sizeof *prefetch_paths; i++) {
		int in = nc_openat2(root, prefetch_paths[i], HOST_FILE_OPEN, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
		if (in < 0)
			continue;
		struct stat st;
		if (fstat(in, &st) == 0 && S_ISREG(st.st_mode)) {
			int out = open(PREFETCH, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
			if (out >= 0 && copy_fd(out, in, st.st_size) == 0) {
				prefetch_st = st;
				prefetched = 1;
			} else if (out >= 0) {
				unlink(PREFETCH); // op_bindfile copies it, and says why it failed
			}
			if (out >= 0)
				close(out);
			close(in);
			break;
		}
		close(in);
	}
	close(root);
}

// take_prefetched reports whether in is the prefetched file, unchanged.
static int take_prefetched(int in)
{
	struct stat st;
	return prefetched && fstat(in, &st) == 0 && st.st_dev == prefetch_st.st_dev && st.st_ino == prefetch_st.st_ino &&
	       st.st_size == prefetch_st.st_size && st.st_mtim.tv_sec == prefetch_st.st_mtim.tv_sec &&
	       st.st_mtim.tv_nsec == prefetch_st.st_mtim.tv_nsec;
}

static void drop_prefetched(void)
{
	if (prefetched)
		unlink(PREFETCH);
	prefetched = 0;
}

static void op_bindfile(struct op *o)
{
	need(o, 3);
	static int seq;
	struct arg *data = &o->a[1];
	char *dst = astr(&o->a[2]);
	char src[64];
	struct stat st;
	if (stat(dst, &st) < 0 && errno == ENOENT) {
		if (!own_dir(dst)) {
			char step[512];
			snprintf(step, sizeof step, "%.*s", (int)o->a[0].n, o->a[0].p);
			fail(step, "does not exist in the sandbox; files can only be placed over existing paths or under /tmp, /run or /dev/shm");
		}
		mkdir_p(dst);
		int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			fail_errno(o, dst);
		close(fd);
	}
	int fd = -1;
	if (o->nargs > 3 && o->a[3].n > 0 && prefetched) {
		char *from = astr(&o->a[3]);
		int in = open(from, HOST_FILE_OPEN);
		if (in >= 0 && take_prefetched(in)) {
			snprintf(src, sizeof src, "%s", PREFETCH);
			fd = open(src, O_WRONLY | O_APPEND | O_CLOEXEC);
			prefetched = 0; // taken: it is unlinked below like a staged file
		}
		if (in >= 0)
			close(in);
		free(from);
	}
	if (fd < 0) {
		if (mkdir(STAGING, 0700) < 0 && errno != EEXIST)
			fail_errno(o, STAGING);
		snprintf(src, sizeof src, STAGING "/%d", seq++);
		fd = open(src, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
		if (fd < 0)
			fail_errno(o, src);
	}
	if (o->nargs > 3 && o->a[3].n > 0 && strcmp(src, PREFETCH) != 0) {
		// A host file first (under the old root), copied in the kernel.
		char *from = astr(&o->a[3]);
		int in = open(from, HOST_FILE_OPEN);
		struct stat fst;
		if (in >= 0 && fstat(in, &fst) == 0 && S_ISREG(fst.st_mode)) {
			if (copy_fd(fd, in, fst.st_size) < 0)
				fail_errno(o, from);
		} else {
			note("files: %s: not readable (%s); %s holds only what nemoclaw adds", from + strlen(OLDROOT),
			     in >= 0 ? "not a regular file" : strerror(errno), dst);
		}
		if (in >= 0)
			close(in);
	}
	if (write_all(fd, data->p, data->n) < 0)
		fail_errno(o, src);
	close(fd);
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
		fail_errno(o, "bind");
	if (mount("none", dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
		fail_errno(o, "read-only");
	unlink(src);
	rmdir(STAGING); // fails while other files are staged; the last one removes it
	free(dst);
}

static void op_listen(struct op *o)
{
	need(o, 5);
	char *name = astr(&o->a[1]);
	int type = anum(&o->a[2]), proto = anum(&o->a[3]), port = anum(&o->a[4]);
	if (nfds == MAX_FDS)
		fail("network", "too many listeners");
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, proto);
	if (fd < 0)
		fail_errno(o, "socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	// An optional sixth argument is the IPv4 address (host order): the
	// inference listeners bind 127.0.0.2; the others 127.0.0.1.
	uint32_t addr = o->nargs > 5 ? (uint32_t)anum(&o->a[5]) : INADDR_LOOPBACK;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(addr)};
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		fail_errno(o, "bind");
	if (type == SOCK_STREAM && listen(fd, 1024) < 0)
		fail_errno(o, "listen");
	fds[nfds++] = fd;
	if (fdnames_len)
		fdnames[fdnames_len++] = ',';
	json_str(fdnames, sizeof fdnames - 1, &fdnames_len, name);
	free(name);
}

// hold is the idmap helper's body: it waits to be killed.
__attribute__((noreturn)) static int hold(void *arg)
{
	(void)arg;
	for (;;)
		pause();
}

// idmap_userns returns a user namespace fd with the given uid and gid
// maps (the launcher's idmapLines), for an idmapped mount. A helper process
// holds the namespace while its maps are written.
static int idmap_userns(const struct arg *uidmap, const struct arg *gidmap)
{
	static char stack[16384] __attribute__((aligned(16)));
	// It shares our memory and waits, every signal blocked as in the
	// init, until SIGKILL ends it once the namespace is open.
	pid_t pid = clone(hold, stack + sizeof stack, CLONE_NEWUSER | CLONE_VM | SIGCHLD, NULL);
	if (pid < 0)
		return -1;
	char path[64];
	int ok = 1, fd = -1;
	struct {
		const char *file, *text;
		size_t n;
	} w[] = {{"uid_map", uidmap->p, uidmap->n}, {"setgroups", "deny", 4}, {"gid_map", gidmap->p, gidmap->n}};
	for (int i = 0; i < 3 && ok; i++) {
		snprintf(path, sizeof path, "/proc/%d/%s", pid, w[i].file);
		int m = open(path, O_WRONLY | O_CLOEXEC);
		ok = m >= 0 && write(m, w[i].text, w[i].n) == (ssize_t)w[i].n;
		if (m >= 0)
			close(m);
	}
	if (ok) {
		snprintf(path, sizeof path, "/proc/%d/ns/user", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	int e = errno;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, __WALL);
	errno = e;
	return fd;
}

// refuse_symlink fails the step with the first symlink on path below
// anchor (open as a), which openat2 refused to follow.
__attribute__((noreturn)) static void refuse_symlink(struct op *o, int a, const char *anchor, const char *path)
{
	char rel[1024], target[1024], cause[3072];
	snprintf(rel, sizeof rel, "%s", path + strlen(anchor) + 1);
	for (char *s = rel;; s++) {
		char c = *s;
		if (c != '/' && c != 0)
			continue;
		*s = 0;
		struct stat st;
		if (fstatat(a, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
			ssize_t n = readlinkat(a, rel, target, sizeof target - 1);
			target[n < 0 ? 0 : n] = 0;
			snprintf(cause, sizeof cause,
			         "%.512s/%.512s is a symlink to %.512s, inside %.512s, which the agent can write (in this run or an earlier one): "
			         "the policy's path %.512s would lead wherever the link points",
			         anchor, rel, target, anchor, path);
			fail_refused(o, cause, "remove the symlink if nobody made it on purpose (an earlier run's agent may have planted it), "
			                       "or name the directory it points to in filesystem_policy instead");
		}
		if (c == 0)
			break;
		*s = c;
	}
	errno = ELOOP;
	fail_errno(o, path);
}

// open_policy_path opens a policy path (absolute, clean) with O_PATH.
// Below anchor, an agent-writable tree (anchorOf in landlock.go; "" for
// none), no symlink is followed: a symlink there, planted by an earlier
// run, would move a rule, bind or mask to its target, and fails the step
// naming it. Without an anchor the host's own layout holds, and nofollow
// opens a final symlink itself (O_NOFOLLOW).
static int open_policy_path(struct op *o, const char *anchor, const char *path, int nofollow)
{
	if (!*anchor)
		return open(path, O_PATH | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
	int a = open(anchor, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (a < 0)
		return -1;
	int fd = nc_openat2(a, path + strlen(anchor) + 1, O_PATH | O_CLOEXEC,
	                    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
	if (fd < 0 && errno == ELOOP)
		refuse_symlink(o, a, anchor, path);
	int e = errno;
	close(a);
	errno = e;
	return fd;
}

// Kinds of OP_BIND_ACCESS; keep in step with bindFlags... in landlock.go.
enum { BIND_FLAGS = 0, BIND_PIN = 1, BIND_FROM_HOST = 2, BIND_HIDE = 3 };

// hide_at mounts an empty read-only tmpfs on the directory dst (open).
static void hide_at(struct op *o, int dst, const char *p)
{
	int fs = syscall(NC_SYS_fsopen, "tmpfs", NC_FSOPEN_CLOEXEC);
	if (fs < 0 || syscall(NC_SYS_fsconfig, fs, NC_FSCONFIG_SET_STRING, "size", "4k", 0) < 0 ||
	    syscall(NC_SYS_fsconfig, fs, NC_FSCONFIG_SET_STRING, "mode", "0555", 0) < 0 ||
	    syscall(NC_SYS_fsconfig, fs, NC_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		fail_errno(o, "tmpfs");
	int m = syscall(NC_SYS_fsmount, fs, NC_FSMOUNT_CLOEXEC,
	                NC_MOUNT_ATTR_RDONLY | NC_MOUNT_ATTR_NOSUID | NC_MOUNT_ATTR_NODEV | NC_MOUNT_ATTR_NOEXEC);
	if (m < 0)
		fail_errno(o, "tmpfs");
	if (syscall(NC_SYS_move_mount, m, "", dst, "", NC_MOVE_MOUNT_F_EMPTY_PATH | NC_MOVE_MOUNT_T_EMPTY_PATH) < 0)
		fail_errno(o, p);
	close(m);
	close(fs);
}

// op_bind_access binds a policy path (accessBinds in landlock.go says
// which and why): onto itself read-only (recursively) or read-write again
// (its top mount only: a host mount read-only beneath stays so), onto
// itself as it is (a pin: a mount point cannot be renamed), or the host's
// own path over it (a read_write host path, nosuid and nodev); or hides it
// under an empty read-only tmpfs. Source and target are opened first
// (open_policy_path) and the mount made through the descriptors, so no
// symlink can redirect it. A path that does not exist is left as it is
// (with a note for read_only), as is a symlink outside any agent-writable
// tree (the host's own: name its target instead).
static void op_bind_access(struct op *o)
{
	need(o, 3);
	char *p = astr(&o->a[1]);
	int ro = anum(&o->a[2]);
	char *anchor = o->nargs > 3 ? astr(&o->a[3]) : "";
	int kind = o->nargs > 4 ? (int)anum(&o->a[4]) : BIND_FLAGS;
	int dst = open_policy_path(o, anchor, p, 1);
	struct stat st;
	if (dst < 0 || fstat(dst, &st) < 0) {
		if (errno != ENOENT || kind == BIND_HIDE) // the launcher made what it hides
			fail_errno(o, p);
		if (ro && kind == BIND_FLAGS)
			note("filesystem_policy: read_only %s does not exist in the sandbox: if the agent makes it, it is as writable as its parent", p);
		free(p);
		return;
	}
	if (S_ISLNK(st.st_mode)) {
		note("filesystem_policy: %s is a symlink: its mount is left as it is (name its target instead)", p);
		close(dst);
		free(p);
		return;
	}
	if (kind == BIND_HIDE) {
		hide_at(o, dst, p);
		close(dst);
		free(p);
		return;
	}
	int src = dst;
	if (kind == BIND_FROM_HOST) {
		char hp[4096], ha[4096];
		snprintf(hp, sizeof hp, OLDROOT "%s", p);
		snprintf(ha, sizeof ha, *anchor ? OLDROOT "%s" : "", anchor);
		if ((src = open_policy_path(o, ha, hp, 1)) < 0 || fstat(src, &st) < 0)
			fail_errno(o, hp);
		if (S_ISLNK(st.st_mode)) {
			note("filesystem_policy: %s is a symlink on the host: its mount is left as it is (name its target instead)", p);
			close(src), close(dst);
			free(p);
			return;
		}
	}
	int t = syscall(NC_SYS_open_tree, src, "", NC_OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
	if (t < 0)
		fail_errno(o, p);
	struct nc_mount_attr attr = {0};
	unsigned int at = AT_EMPTY_PATH | AT_RECURSIVE;
	switch (kind) {
	case BIND_FROM_HOST:
		attr.attr_set = NC_MOUNT_ATTR_NOSUID | NC_MOUNT_ATTR_NODEV;
		break;
	case BIND_FLAGS:
		if (ro) {
			attr.attr_set = NC_MOUNT_ATTR_RDONLY | NC_MOUNT_ATTR_NOSUID | NC_MOUNT_ATTR_NODEV;
		} else {
			attr.attr_clr = NC_MOUNT_ATTR_RDONLY;
			at = AT_EMPTY_PATH;
		}
		break;
	}
	if ((attr.attr_set || attr.attr_clr) && syscall(NC_SYS_mount_setattr, t, "", at, &attr, sizeof attr) < 0)
		fail_errno(o, ro ? "read-only" : "read-write");
	if (syscall(NC_SYS_move_mount, t, "", dst, "", NC_MOVE_MOUNT_F_EMPTY_PATH | NC_MOVE_MOUNT_T_EMPTY_PATH) < 0)
		fail_errno(o, p);
	close(t);
	if (src != dst)
		close(src);
	close(dst);
	free(p);
}

// op_bind_workspace binds the host directory src (under OLDROOT) over dst,
// recursively, nosuid and nodev; with uid and gid maps (non-empty),
// idmapped so that the agent (au:ag) owns what the directory's owner
// (ou:og) owns: the host's files keep their owners. The directory bound
// must be the one the launcher checked (device and inode, and owner when
// mapping), not one swapped in since. A filesystem that cannot be idmapped
// fails the step (the hint says what to do); the directory is never
// chowned.
static void op_bind_workspace(struct op *o)
{
	need(o, 11);
	char *src = astr(&o->a[1]), *dst = astr(&o->a[2]);
	uid_t ou = anum(&o->a[3]), au = anum(&o->a[5]);
	gid_t og = anum(&o->a[4]), ag = anum(&o->a[6]);
	uint64_t dev = anum(&o->a[7]), ino = anum(&o->a[8]);
	const struct arg *uidmap = &o->a[9], *gidmap = &o->a[10];
	int idmap = uidmap->n > 0;
	const char *host = src + strlen(OLDROOT);
	char what[1200];
	int t = syscall(NC_SYS_open_tree, AT_FDCWD, src, NC_OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE);
	if (t < 0)
		fail_errno(o, host);
	struct stat st;
	if (fstat(t, &st) < 0)
		fail_errno(o, host);
	if ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino || (idmap && (st.st_uid != ou || st.st_gid != og))) {
		errno = ESTALE;
		snprintf(what, sizeof what, "%s changed (replaced, or its owner) while the sandbox started", host);
		fail_errno(o, what);
	}
	struct nc_mount_attr attr = {.attr_set = NC_MOUNT_ATTR_NOSUID | NC_MOUNT_ATTR_NODEV};
	int ns = -1;
	if (idmap) {
		// Never host root: through the mount the agent would write
		// files as root, setuid-root ones included. The launcher
		// refuses a root-owned directory.
		if (ou == 0) {
			errno = EPERM;
			fail_errno(o, "refusing to map host root to the agent");
		}
		if ((ns = idmap_userns(uidmap, gidmap)) < 0)
			fail_errno(o, "user namespace for the idmapped mount");
		attr.attr_set |= NC_MOUNT_ATTR_IDMAP;
		attr.userns_fd = ns;
	}
	if (syscall(NC_SYS_mount_setattr, t, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
		if (ns >= 0)
			snprintf(what, sizeof what, "%s (owned by %u:%u, for the agent's %u:%u): its filesystem cannot be idmapped", host, ou, og, au, ag);
		else
			snprintf(what, sizeof what, "%s: nosuid, nodev", host);
		fail_errno(o, what);
	}
	if (syscall(NC_SYS_move_mount, t, "", AT_FDCWD, dst, NC_MOVE_MOUNT_F_EMPTY_PATH) < 0)
		fail_errno(o, dst);
	close(t);
	if (ns >= 0)
		close(ns);
	free(src), free(dst);
}

// op_protect binds a path that host tools run code from (a name of
// HostExecutableNames in the workspace) read-only onto itself, recursively:
// a mount point the agent can neither write, rename nor delete. The path
// is opened without following any symlink or leaving its mount (the
// launcher refused symlinks; one planted since fails the step), and bound
// through that descriptor, so the mount lands on the very inode checked.
static void op_protect(struct op *o)
{
	need(o, 2);
	char *p = astr(&o->a[1]);
	struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
			       .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
	char *slash = strrchr(p, '/');
	*slash = 0;
	int parent = open(*p ? p : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	*slash = '/';
	if (parent < 0)
		fail_errno(o, p);
	int fd = syscall(SYS_openat2, parent, slash + 1, &how, sizeof how);
	if (fd < 0)
		fail_errno(o, p);
	int t = syscall(NC_SYS_open_tree, fd, "", NC_OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
	if (t < 0)
		fail_errno(o, p);
	struct nc_mount_attr attr = {.attr_set = NC_MOUNT_ATTR_RDONLY | NC_MOUNT_ATTR_NOSUID | NC_MOUNT_ATTR_NODEV};
	if (syscall(NC_SYS_mount_setattr, t, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
		fail_errno(o, "read-only");
	if (syscall(NC_SYS_move_mount, t, "", fd, "", NC_MOVE_MOUNT_F_EMPTY_PATH | NC_MOVE_MOUNT_T_EMPTY_PATH) < 0)
		fail_errno(o, p);
	close(t), close(fd), close(parent);
	free(p);
}

static void run_setup_op(struct op *o)
{
	switch (o->code) {
	case OP_HOSTNAME:
		need(o, 2);
		if (sethostname(o->a[1].p, o->a[1].n) < 0)
			fail_errno(o, "");
		break;
	case OP_MOUNT: {
		need(o, 6);
		char *src = astr(&o->a[1]), *dst = astr(&o->a[2]), *fs = astr(&o->a[3]), *data = astr(&o->a[5]);
		if (mount(src, dst, *fs ? fs : NULL, anum(&o->a[4]), *data ? data : NULL) < 0) {
			char what[1024];
			snprintf(what, sizeof what, "%s on %s", src, dst);
			fail_errno(o, what);
		}
		free(src), free(dst), free(fs), free(data);
		break;
	}
	case OP_MKDIR: {
		need(o, 3);
		char *p = astr(&o->a[1]);
		if (mkdir(p, anum(&o->a[2])) < 0)
			fail_errno(o, p);
		chmod(p, anum(&o->a[2])); // umask-proof (sticky /dev/shm)
		free(p);
		break;
	}
	case OP_SYMLINK: {
		need(o, 3);
		char *t = astr(&o->a[1]), *p = astr(&o->a[2]);
		if (symlink(t, p) < 0)
			fail_errno(o, p);
		free(t), free(p);
		break;
	}
	case OP_MKFILE: {
		need(o, 3);
		char *p = astr(&o->a[1]);
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, anum(&o->a[2]));
		if (fd < 0)
			fail_errno(o, p);
		close(fd);
		free(p);
		break;
	}
	case OP_UMOUNT: {
		need(o, 3);
		char *p = astr(&o->a[1]);
		if (strcmp(p, OLDROOT) == 0)
			drop_prefetched(); // nothing can name a host file from here on
		if (umount2(p, anum(&o->a[2])) < 0)
			fail_errno(o, p);
		free(p);
		break;
	}
	case OP_RMDIR: {
		need(o, 2);
		char *p = astr(&o->a[1]);
		if (rmdir(p) < 0)
			fail_errno(o, p);
		free(p);
		break;
	}
	case OP_WRITE_OPTIONAL: {
		need(o, 4);
		char *p = astr(&o->a[1]);
		int fd = open(p, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, o->a[2].p, o->a[2].n) != (ssize_t)o->a[2].n)
			note("%.*s: %s: %.*s", (int)o->a[0].n, o->a[0].p, strerror(errno), (int)o->a[3].n, o->a[3].p);
		if (fd >= 0)
			close(fd);
		free(p);
		break;
	}
	case OP_LISTEN:
		op_listen(o);
		break;
	case OP_RLIMIT: {
		need(o, 3);
		struct rlimit rl = {.rlim_cur = anum(&o->a[2]), .rlim_max = anum(&o->a[2])};
		if (setrlimit(anum(&o->a[1]), &rl) < 0)
			fail_errno(o, "");
		break;
	}
	case OP_BINDFILE:
		op_bindfile(o);
		break;
	case OP_BIND_WORKSPACE:
		op_bind_workspace(o);
		break;
	case OP_CHOWN: {
		need(o, 4);
		char *p = astr(&o->a[1]);
		if (chown(p, anum(&o->a[2]), anum(&o->a[3])) < 0)
			fail_errno(o, p);
		free(p);
		break;
	}
	case OP_DUMPABLE0:
		if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
			fail_errno(o, "");
		break;
	case OP_BIND_ACCESS:
		op_bind_access(o);
		break;
	case OP_MOUNT_ATTR: {
		// A host directory bound by the program: its flags, on every
		// mount beneath it too.
		need(o, 3);
		char *p = astr(&o->a[1]);
		struct nc_mount_attr attr = {.attr_set = anum(&o->a[2])};
		if (syscall(NC_SYS_mount_setattr, AT_FDCWD, p, AT_RECURSIVE | AT_SYMLINK_NOFOLLOW, &attr, sizeof attr) < 0)
			fail_errno(o, p);
		free(p);
		break;
	}
	case OP_PROTECT:
		op_protect(o);
		break;
	case OP_STOP_TIMEOUT:
		need(o, 2);
		stop_timeout_ms = (int64_t)anum(&o->a[1]);
		break;
	case OP_LANDLOCK_RULESET: {
		need(o, 4);
		struct nc_ruleset_attr attr = {
		    .handled_access_fs = anum(&o->a[1]),
		    .handled_access_net = anum(&o->a[2]),
		    .scoped = anum(&o->a[3]),
		};
		ruleset = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
		if (ruleset < 0)
			fail_errno(o, "");
		fcntl(ruleset, F_SETFD, FD_CLOEXEC);
		break;
	}
	case OP_LANDLOCK_PATH: {
		need(o, 4);
		char *p = astr(&o->a[1]);
		int fd = open_policy_path(o, o->nargs > 4 ? astr(&o->a[4]) : "", p, 0);
		if (fd < 0) {
			if (errno == ENOENT) {
				note("landlock: %s does not exist in the sandbox; its rule grants nothing", p);
				free(p);
				break;
			}
			fail_errno(o, p);
		}
		struct stat st;
		uint64_t access = anum(&o->a[2]);
		if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
			access &= anum(&o->a[3]); // file-only rights
		if (access) {
			struct nc_path_beneath_attr pb = {.allowed_access = access, .parent_fd = fd};
			if (syscall(SYS_landlock_add_rule, ruleset, NC_RULE_PATH_BENEATH, &pb, 0) < 0)
				fail_errno(o, p);
		}
		close(fd);
		free(p);
		break;
	}
	case OP_LANDLOCK_PORT: {
		need(o, 3);
		struct nc_net_port_attr np = {.allowed_access = anum(&o->a[2]), .port = anum(&o->a[1])};
		if (syscall(SYS_landlock_add_rule, ruleset, NC_RULE_NET_PORT, &np, 0) < 0)
			fail_errno(o, "");
		break;
	}
	default:
		fail("spec", "unknown operation in the setup section");
	}
}

// ---- the agent's side of the fork ----------------------------------------

static int errpipe = -1;

// child_fail reports to the init through the exec pipe and exits.
// child_fail_code reports the agent's failed op to the init as
// "step\0cause\0code": the cause is what, with errno's text when errno is
// set; code is the errno the launcher acts on (fail_code), given only for
// the agent's execve.
__attribute__((noreturn)) static void child_fail_code(struct op *o, const char *what, int code)
{
	char buf[2048];
	int e = errno;
	// errno 0: what already says everything.
	int n = snprintf(buf, sizeof buf, "%.*s%c%s%s%s%c%d", (int)o->a[0].n, o->a[0].p, 0, what ? what : "",
			 e && what && *what ? ": " : "", e ? strerror(e) : "", 0, code);
	if (n > (int)sizeof buf)
		n = sizeof buf;
	ssize_t w = write(errpipe, buf, n);
	(void)w;
	_exit(127);
}

__attribute__((noreturn)) static void child_fail(struct op *o, const char *what)
{
	child_fail_code(o, what, 0);
}

static int is_exec(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

static void run_agent_op(struct op *o)
{
	switch (o->code) {
	case OP_NNP:
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			child_fail(o, "");
		break;
	case OP_CAPBSET: {
		int c;
		for (c = 0; c < 64; c++) {
			if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
				if (errno == EINVAL)
					break;
				child_fail(o, "drop");
			}
		}
		for (c = 0; c < 64; c++) {
			int r = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
			if (r < 0)
				break;
			if (r != 0) {
				errno = EPERM;
				child_fail(o, "verify: a capability is still in the bounding set");
			}
		}
		break;
	}
	case OP_SECUREBITS:
		need(o, 2);
		if (prctl(PR_SET_SECUREBITS, anum(&o->a[1]), 0, 0, 0) < 0)
			child_fail(o, "");
		break;
	case OP_SETIDS: {
		need(o, 3);
		gid_t g = anum(&o->a[1]);
		uid_t u = anum(&o->a[2]);
		if (syscall(SYS_setgroups, 1, &g) < 0)
			child_fail(o, "setgroups");
		if (syscall(SYS_setresgid, g, g, g) < 0)
			child_fail(o, "setresgid");
		if (syscall(SYS_setresuid, u, u, u) < 0)
			child_fail(o, "setresuid");
		break;
	}
	case OP_CAPCLEAR: {
		struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
		struct __user_cap_data_struct d[2];
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		memset(d, 0, sizeof d);
		if (syscall(SYS_capset, &h, d) < 0)
			child_fail(o, "capset");
		if (syscall(SYS_capget, &h, d) < 0)
			child_fail(o, "capget");
		if (d[0].effective | d[0].permitted | d[0].inheritable | d[1].effective | d[1].permitted | d[1].inheritable) {
			errno = EPERM;
			child_fail(o, "verify: capabilities remain");
		}
		break;
	}
	case OP_LANDLOCK_RESTRICT:
		if (ruleset >= 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
			child_fail(o, "");
		break;
	case OP_SECCOMP: {
		need(o, 2);
		struct sock_fprog prog = {.len = o->a[1].n / 8, .filter = (struct sock_filter *)o->a[1].p};
		if (o->a[1].n % 8 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			child_fail(o, "");
		break;
	}
	case OP_EXEC: {
		// step, path-or-name, dir, tty, argc, argv..., env...
		need(o, 5);
		char *name = astr(&o->a[1]), *dir = astr(&o->a[2]);
		int tty = anum(&o->a[3]), argc = anum(&o->a[4]);
		if ((uint32_t)(5 + argc) > o->nargs)
			child_fail(o, "malformed");
		char **argv = calloc(argc + 1, sizeof *argv);
		int envc = o->nargs - 5 - argc;
		char **envp = calloc(envc + 1, sizeof *envp);
		for (int i = 0; i < argc; i++)
			argv[i] = astr(&o->a[5 + i]);
		for (int i = 0; i < envc; i++)
			envp[i] = astr(&o->a[5 + argc + i]);
		if (setsid() < 0)
			child_fail(o, "setsid");
		if (tty && ioctl(0, TIOCSCTTY, 0) < 0)
			child_fail(o, "controlling terminal");
		if (chdir(dir) < 0)
			child_fail(o, dir);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (strchr(name, '/')) {
			execve(name, argv, envp);
			child_fail_code(o, name, errno);
		}
		const char *path = "/usr/local/bin:/usr/bin:/bin";
		for (int i = 0; i < envc; i++)
			if (!strncmp(envp[i], "PATH=", 5))
				path = envp[i] + 5;
		char cand[4096];
		const char *s = path;
		while (*s) {
			const char *e = strchr(s, ':');
			size_t l = e ? (size_t)(e - s) : strlen(s);
			snprintf(cand, sizeof cand, "%.*s/%s", (int)l, l ? s : ".", name);
			if (is_exec(cand)) {
				execve(cand, argv, envp);
				child_fail_code(o, cand, errno);
			}
			if (!e)
				break;
			s = e + 1;
		}
		errno = 0;
		char what[4200];
		snprintf(what, sizeof what, "%s: executable file not found in the sandbox's PATH (%s)", name, path);
		child_fail_code(o, what, ENOENT);
	}
	default:
		errno = EINVAL;
		child_fail(o, "unknown operation in the agent section");
	}
}

// ---- the fixed skeleton --------------------------------------------------
//
// What every sandbox gets whatever its policy: private mount propagation, a
// tmpfs as the new root (the host's root kept at /.oldroot for the
// program's binds), a fresh /proc, a minimal /dev, and lo up. The program
// from the launcher adds everything the policy decides. The pre-spawned
// init builds the skeleton while the launcher is still starting.

static void sk_fail(const char *step, const char *what)
{
	char cause[1024];
	int e = errno;
	snprintf(cause, sizeof cause, "%s: %s", what, strerror(e));
	fail(step, cause);
}

static void sk_mount(const char *step, const char *src, const char *dst, const char *fs, unsigned long flags, const char *data)
{
	if (mount(src, dst, fs, flags, data) < 0) {
		char what[512];
		snprintf(what, sizeof what, "%s on %s", src, dst);
		sk_fail(step, what);
	}
}

static void sk_mkdir(const char *step, const char *p, mode_t m)
{
	if (mkdir(p, m) < 0)
		sk_fail(step, p);
	chmod(p, m); // umask-proof (sticky /dev/shm)
}

static void skeleton(void)
{
	sk_mount("mount: make / private", "none", "/", NULL, MS_REC | MS_PRIVATE, NULL);
	// /tmp exists everywhere; pivot_root moves the new tmpfs away from
	// it, so the host's /tmp stays reachable under /.oldroot.
	sk_mount("mount: new root", "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m");
	sk_mkdir("mount: new root", "/tmp" OLDROOT, 0700);
	if (syscall(SYS_pivot_root, "/tmp", "/tmp" OLDROOT) < 0)
		sk_fail("mount: pivot_root", "/tmp");
	if (chdir("/") < 0)
		sk_fail("mount: chdir /", "/");
	// /proc of the new pid namespace (while the host's is still visible
	// under /.oldroot, which a user namespace requires).
	sk_mkdir("mount: /proc", "/proc", 0555);
	sk_mount("mount: /proc", "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	// A minimal /dev: a few host nodes, a private devpts, /dev/shm.
	sk_mkdir("mount: /dev", "/dev", 0755);
	sk_mount("mount: /dev", "tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k");
	static const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
	for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
		char dst[64], src[64], step[80];
		snprintf(dst, sizeof dst, "/dev/%s", nodes[i]);
		snprintf(src, sizeof src, OLDROOT "/dev/%s", nodes[i]);
		snprintf(step, sizeof step, "mount: %s", dst);
		int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0)
			sk_fail(step, dst);
		close(fd);
		sk_mount(step, src, dst, NULL, MS_BIND, NULL);
	}
	sk_mkdir("mount: /dev/pts", "/dev/pts", 0755);
	sk_mount("mount: /dev/pts", "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
	sk_mkdir("mount: /dev/shm", "/dev/shm", 01777);
	sk_mount("mount: /dev/shm", "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	static const char *links[][2] = {{"pts/ptmx", "/dev/ptmx"}, {"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}};
	for (size_t i = 0; i < sizeof links / sizeof *links; i++)
		if (symlink(links[i][0], links[i][1]) < 0)
			sk_fail("mount: /dev links", links[i][1]);
	sk_mount("mount: /dev read-only", "none", "/dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL);
	// lo, with an ioctl: no `ip` exec.
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		sk_fail("network: lo", "");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		sk_fail("network: lo", "up");
	close(fd);
}

// ---- joining the running sandbox ----------------------------------------
//
// Once the agent runs, the launcher may ask the init to start more
// processes in the sandbox (Sandbox.Exec in join.go): a request on the
// status socket carries an OP_JOIN record (its id) and an OP_EXEC record
// (argv, directory, terminal or not, environment), with the process's
// three standard streams (SCM_RIGHTS). The init starts it exactly as it
// started the agent: a vfork-style clone that runs the agent section of
// the program, which the init keeps (the same no_new_privs, bounding set,
// securebits, ids, capability clear, Landlock ruleset and seccomp filter,
// in the same order), with the request's OP_EXEC in place of the agent's.
// Nothing of the request can change those steps: a joined process can
// never hold more than the agent. The init itself stays unrestricted (it
// must reap, signal and tear down); it is pid 1 of the sandbox's pid
// namespace, so the joined process is in every namespace of the sandbox
// and dies with it. Replies: {"join":{"id","pid"|"error"}} once the process
// runs or failed to, {"joined":{"id","code","signal"}} when it exits.

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
// JOIN_MAX is at least maxJoinRequest in join.go (TestOpcodesMatchInit).
#define JOIN_MAX (256u << 10)
#define MAX_JOINS 1024
#define JOIN_ARENA (1u << 20)

static int agent_from = -1;
static char *jbuf;      // one request, reused: parsed in place
static char *jarena;    // the joined child's allocations (see join_spawn)
static struct arg jargs[MAX_ARGS + 8];
static struct {
	pid_t pid;
	uint64_t id;
} joins[MAX_JOINS];
static int njoins;
static int sfd = -1;    // the init's signalfd
static int stopping;    // SIGTERM seen, stop timeout running: no new joins

struct join_args {
	int rd, wr;
	int fds[3];
	struct op *exec;
};

// join_main runs in the joined process: its streams, then the agent
// section of the program with the request's exec.
static int join_main(void *arg)
{
	struct join_args *ja = arg;
	close(ja->rd);
	errpipe = ja->wr;
	close(STATUS_FD);
	if (sfd >= 0)
		close(sfd);
	for (int i = 0; i < 3; i++)
		if (dup2(ja->fds[i], i) < 0)
			child_fail(ja->exec, "streams");
	for (int i = 0; i < 3; i++)
		if (ja->fds[i] > 2)
			close(ja->fds[i]);
	// Nothing but 0-2 reaches the process: what is still open here (the
	// errpipe, the Landlock ruleset) goes at exec.
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		child_fail(ja->exec, "close descriptors");
	for (int i = agent_from; i < nops; i++)
		run_agent_op(ops[i].code == OP_EXEC ? ja->exec : &ops[i]);
	errno = EINVAL;
	child_fail(ja->exec, "program ended without exec");
	return 127;
}

static void join_reply(const char *json)
{
	send_msg(json, NULL, 0);
}

// join_refuse reports a join request that did not start a process.
static void join_refuse(uint64_t id, const char *step, const char *cause, int code)
{
	char buf[4096];
	size_t l = 0;
	l += snprintf(buf, sizeof buf, "{\"join\":{\"id\":%llu,\"error\":{\"step\":", (unsigned long long)id);
	json_str(buf, sizeof buf - 64, &l, step);
	l += snprintf(buf + l, sizeof buf - l, ",\"message\":");
	json_str(buf, sizeof buf - 64, &l, cause);
	if (code)
		l += snprintf(buf + l, sizeof buf - l, ",\"errno\":%d", code);
	snprintf(buf + l, sizeof buf - l, "}}}");
	join_reply(buf);
}

// parse_request splits a request into at most max records (of jargs).
static int parse_request(size_t n, struct op *out, int max)
{
	size_t off = 0, used = 0;
	int k = 0;
	while (off < n) {
		if (k == max || n - off < 8)
			return -1;
		struct op o;
		memcpy(&o.code, jbuf + off, 4);
		memcpy(&o.nargs, jbuf + off + 4, 4);
		off += 8;
		if (o.nargs == 0 || o.nargs > MAX_ARGS || used + o.nargs + 1 > sizeof jargs / sizeof *jargs)
			return -1;
		o.a = jargs + used;
		used += o.nargs + 1;
		for (uint32_t i = 0; i < o.nargs; i++) {
			if (n - off < 4)
				return -1;
			memcpy(&o.a[i].n, jbuf + off, 4);
			off += 4;
			if (n - off < o.a[i].n)
				return -1;
			o.a[i].p = jbuf + off;
			off += o.a[i].n;
		}
		out[k++] = o;
	}
	return k;
}

// read_report reads a child's failure report from fd until its end (the
// child's exec closed it, or the child wrote and exited) into buf, leaving
// room for a terminating NUL; it returns the bytes read.
static ssize_t read_report(int fd, char *buf, size_t cap)
{
	ssize_t n, got = 0;
	while ((n = read(fd, buf + got, cap - 1 - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		got += n;
	}
	return got;
}

// join_spawn starts the joined process of request id.
static void join_spawn(uint64_t id, struct op *exec, int *rfds, int nr)
{
	if (stopping) {
		join_refuse(id, "exec", "the sandbox is stopping (SIGTERM)", 0);
		return;
	}
	if (nr != 3 || exec->code != OP_EXEC || exec->nargs < 6) {
		join_refuse(id, "exec", "malformed join request", 0);
		return;
	}
	if (njoins == MAX_JOINS) {
		join_refuse(id, "exec", "too many joined processes running in this sandbox", 0);
		return;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		join_refuse(id, "exec: pipe", strerror(errno), 0);
		return;
	}
	// The child shares this memory until it execs (as the agent did): its
	// allocations (argv, envp) go to an arena of their own, rewound for
	// the next one, so that the long-lived init does not grow with every
	// join. A request is at most JOIN_MAX bytes: its copies fit.
	static char stk[256 << 10] __attribute__((aligned(16)));
	char *saved = arena;
	size_t saved_left = arena_left;
	arena = jarena;
	arena_left = JOIN_ARENA;
	struct join_args ja = {.rd = p[0], .wr = p[1], .exec = exec};
	memcpy(ja.fds, rfds, sizeof ja.fds);
	pid_t pid = clone(join_main, stk + sizeof stk, CLONE_VM | CLONE_VFORK | SIGCHLD, &ja);
	int e = errno;
	arena = saved;
	arena_left = saved_left;
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		join_refuse(id, "exec: clone", strerror(e), 0);
		return;
	}
	char ebuf[2048];
	ssize_t got = read_report(p[0], ebuf, sizeof ebuf);
	close(p[0]);
	if (got > 0) {
		ebuf[got] = 0;
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		// "step\0cause\0code", as the agent's (child_fail_code).
		const char *cause = ebuf + strlen(ebuf) + 1;
		const char *code = cause < ebuf + got ? cause + strlen(cause) + 1 : ebuf + got;
		join_refuse(id, ebuf, cause < ebuf + got ? cause : "", code < ebuf + got ? atoi(code) : 0);
		return;
	}
	joins[njoins].pid = pid;
	joins[njoins].id = id;
	njoins++;
	char buf[128];
	snprintf(buf, sizeof buf, "{\"join\":{\"id\":%llu,\"pid\":%d}}", (unsigned long long)id, pid);
	join_reply(buf);
}

// join_find returns the index of the joined process with that id or pid.
static int join_find(uint64_t id, pid_t pid)
{
	for (int i = 0; i < njoins; i++)
		if ((pid && joins[i].pid == pid) || (!pid && joins[i].id == id))
			return i;
	return -1;
}

// join_reaped reports a reaped process if it was a joined one.
static void join_reaped(pid_t w, int st)
{
	int i = join_find(0, w);
	if (i < 0)
		return;
	int code, sig = 0;
	if (WIFSIGNALED(st)) {
		sig = WTERMSIG(st);
		code = 128 + sig;
	} else {
		code = WEXITSTATUS(st);
	}
	char buf[128];
	snprintf(buf, sizeof buf, "{\"joined\":{\"id\":%llu,\"code\":%d,\"signal\":%d}}", (unsigned long long)joins[i].id, code, sig);
	joins[i] = joins[--njoins];
	join_reply(buf);
}

// join_request reads and serves one request; it returns 0 once the
// launcher's end is closed.
static int join_request(void)
{
	char oob[CMSG_SPACE(4 * sizeof(int))];
	struct iovec iov = {.iov_base = jbuf, .iov_len = JOIN_MAX};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = oob, .msg_controllen = sizeof oob};
	ssize_t n = recvmsg(STATUS_FD, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0)
		return 0;
	int rfds[4], nr = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (int i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			if (nr < 4)
				rfds[nr++] = fd;
			else
				close(fd);
		}
	}
	struct op rq[2];
	int k = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ? -1 : parse_request(n, rq, 2);
	uint64_t id = k > 0 && rq[0].nargs >= 2 ? anum(&rq[0].a[1]) : 0;
	if (k == 2 && rq[0].code == OP_JOIN) {
		join_spawn(id, &rq[1], rfds, nr);
	} else if (k == 1 && rq[0].code == OP_JOIN_SIGNAL && rq[0].nargs >= 3) {
		// Only a process still unreaped here: its pid cannot have been
		// reused. To its process group, as the agent's signals.
		int i = join_find(id, 0);
		int sig = anum(&rq[0].a[2]);
		if (i >= 0 && sig > 0 && sig < 65 && kill(-joins[i].pid, sig) < 0 && errno == ESRCH)
			kill(joins[i].pid, sig);
	} else {
		join_refuse(id, "exec", "malformed join request", 0);
	}
	for (int i = 0; i < nr; i++)
		close(rfds[i]);
	return 1;
}

// ---- main ------------------------------------------------------------------

struct agent_args {
	int from, rd, wr;
};

// agent_main runs the agent section of the program in the agent's process
// (sharing the suspended init's memory until it execs) and execs the agent.
static int agent_main(void *arg)
{
	struct agent_args *aa = arg;
	close(aa->rd);
	errpipe = aa->wr;
	close(STATUS_FD);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	for (int i = aa->from; i < nops; i++)
		run_agent_op(&ops[i]);
	errno = EINVAL;
	child_fail(&ops[nops - 1], "program ended without exec");
	return 127;
}

// nsinit_main runs the init: the skeleton (unless built already), the
// program, then the agent; it returns the agent's exit code.
static int nsinit_main(int skeleton_built)
{
	if (!skeleton_built)
		skeleton();
	// The join buffers are mapped before the program sets the sandbox's
	// rlimits: RLIMIT_DATA (the memory limit without a cgroup) refuses
	// new mappings once the init's, the program buffer's reservation
	// included, exceed it.
	jbuf = mmap(NULL, JOIN_MAX, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	jarena = mmap(NULL, JOIN_ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (jbuf == MAP_FAILED || jarena == MAP_FAILED)
		fail("init: join buffers", strerror(errno));
	agent_from = stream_program();

	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);

	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		fail("exec: pipe", strerror(errno));
	// Not fork(): glibc's fork takes malloc's locks, which the
	// pre-spawned init may have inherited held (see prespawn). A vfork-
	// style clone on its own stack runs no atfork handlers, copies no
	// page tables, and resumes the init once the agent has exec'd.
	struct agent_args aa = {.from = agent_from, .rd = p[0], .wr = p[1]};
	size_t stack = 256 << 10;
	char *stk = malloc(stack);
	pid_t agent = clone(agent_main, stk + stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &aa);
	if (agent < 0)
		fail("exec: clone", strerror(errno));
	close(p[1]);
	// The ruleset stays open (close-on-exec) for joined processes.
	char ebuf[2048];
	ssize_t got = read_report(p[0], ebuf, sizeof ebuf);
	close(p[0]);
	if (got > 0) {
		ebuf[got] = 0;
		waitpid(agent, NULL, 0);
		// "step\0cause\0code" (child_fail_code); a cut-short one has no code.
		const char *cause = ebuf + strlen(ebuf) + 1;
		const char *code = cause < ebuf + got ? cause + strlen(cause) + 1 : ebuf + got;
		fail_code(ebuf, cause < ebuf + got ? cause : "", code < ebuf + got ? atoi(code) : 0);
	}

	// Signals and join requests, both waited for with poll.
	sfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		fail("init: signalfd", strerror(errno));

	char ready[16384];
	snprintf(ready, sizeof ready, "{\"ready\":true,\"listeners\":[%s],\"notes\":[%s]}", fdnames, notes);
	send_msg(ready, fds, nfds);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);

	// pid 1: reap everything, forward signals to the agent's process group,
	// start joined processes. A SIGTERM starts the stop timeout: an agent
	// still running when it runs out is killed with everything else here,
	// as `docker stop` does.
	int code = 0, sig = 0, stopped = 0, done = 0;
	struct timespec stop_at;
	struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = STATUS_FD, .events = POLLIN}};
	while (!done) {
		int timeout = -1;
		if (stopping) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			int64_t ns = (stop_at.tv_sec - now.tv_sec) * 1000000000LL + (stop_at.tv_nsec - now.tv_nsec);
			if (ns <= 0) {
				stopping = 0;
				stopped = 1;
				kill(-1, SIGKILL); // the agent's SIGCHLD follows
				continue;
			}
			timeout = (int)((ns + 999999) / 1000000);
		}
		if (poll(pf, 2, timeout) <= 0)
			continue;
		// Signals first: a request that arrives with the agent's end or a
		// SIGTERM is refused, not started into a sandbox going away.
		struct signalfd_siginfo si;
		while (!done && read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
			int s = si.ssi_signo;
			if (s == SIGCHLD) {
				int st;
				pid_t w;
				while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
					if (w == agent) {
						done = 1;
						if (WIFSIGNALED(st)) {
							sig = WTERMSIG(st);
							code = 128 + sig;
						} else {
							code = WEXITSTATUS(st);
						}
					} else {
						join_reaped(w, st);
					}
				}
				continue;
			}
			if (s == SIGPIPE || s == SIGWINCH || s == SIGURG)
				continue;
			if (s == SIGTERM && stop_timeout_ms >= 0 && !stopping && !stopped) {
				clock_gettime(CLOCK_MONOTONIC, &stop_at);
				stop_at.tv_sec += stop_timeout_ms / 1000;
				stop_at.tv_nsec += (stop_timeout_ms % 1000) * 1000000;
				if (stop_at.tv_nsec >= 1000000000) {
					stop_at.tv_sec++;
					stop_at.tv_nsec -= 1000000000;
				}
				stopping = 1;
			}
			if (kill(-agent, s) < 0 && errno == ESRCH)
				kill(agent, s);
		}
		if (!done && pf[1].revents && !join_request())
			pf[1].fd = -1; // the launcher is gone; its death signal follows
	}
	// Nothing outlives the agent: joined processes neither (each one's
	// end is reported before the agent's).
	kill(-1, SIGKILL);
	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, 0);
		if (w > 0)
			join_reaped(w, st);
		else if (errno != EINTR)
			break;
	}
	// The streams go before the report, so that the launcher's copies of
	// a TTY or pipes end now, not when this process has been torn down.
	close(0);
	close(1);
	close(2);
	char ex[128];
	snprintf(ex, sizeof ex, "{\"exit\":{\"code\":%d,\"signal\":%d,\"stopped\":%s}}", code, sig, stopped ? "true" : "false");
	send_msg(ex, NULL, 0);
	return code;
}

// ---- pre-spawned init ------------------------------------------------------
//
// A command that will start a sandbox (`sandbox run`, `blueprint apply`)
// creates the init here, before the Go runtime starts. The main thread
// clones it with only a new pid namespace (and user namespace when not
// root), which is quick; the child unshares the rest itself, so namespace
// creation (~0.8 ms, most of it the network namespace) and the init's own
// exec (~1 ms: a large dynamically linked binary) overlap the launcher's
// start instead of following it. The clone is made on the main thread, not
// a helper thread: its parent-death signal is tied to the thread that
// cloned it, and the main thread lives as long as the process; there is no
// thread to start and tear down; and while the process has a single
// thread, the copy-on-write faults the fork leaves behind need no TLB
// shootdown on the other CPU. The init then waits on a socket; the
// launcher (prespawn.go) writes its id maps, sends its standard streams
// and the program pipe, and later joins it to the sandbox's cgroup. If no sandbox is wanted
// after all (--help, a failed check, --dry-run), the launcher's exit closes
// the socket and the init exits. Anything the pre-spawned init does not fit
// (another init binary, streams that are not files) uses the exec path.

static int prespawn_sock = -1;
static int prespawn_pid; // > 0: the init's pid; < 0: -errno
static int prespawn_pidfd = -1;
static int prespawn_flags; // every namespace the init gets
static int prespawn_later; // those it unshares itself, after the clone

static int wants_prespawn(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if ((!strcmp(argv[i], "sandbox") && !strcmp(argv[i + 1], "run")) ||
		    (!strcmp(argv[i], "blueprint") && !strcmp(argv[i + 1], "apply")))
			return 1;
	}
	return 0;
}

// wipe zeroes the strings of a NULL-terminated vector in this process's
// memory, so /proc/1/cmdline and /proc/1/environ of the sandbox's init show
// nothing of the host (the exec'd init had an empty environment).
static void wipe(char **v)
{
	for (; v && *v; v++)
		memset(*v, 0, strlen(*v));
}

static char **saved_argv, **saved_envp;

// prespawn_child runs in the new namespaces as their pid 1.
static void prespawn_child(int sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL); // the main thread lives as long as the launcher
	setsid();
	wipe(saved_argv);
	wipe(saved_envp);
	// Only the socket survives, as STATUS_FD (where fail() reports); the
	// launcher sends the rest.
	int s = fcntl(sock, F_DUPFD_CLOEXEC, 16);
	if (s < 0 || dup2(s, STATUS_FD) < 0)
		_exit(121);
	close(s);
	s = STATUS_FD;
	syscall(SYS_close_range, 0, STATUS_FD - 1, 0);
	syscall(SYS_close_range, STATUS_FD + 1, ~0U, 0);
	if (unshare(prespawn_later) < 0)
		fail("namespace: unshare", nc_strerror(errno));
	// As root the skeleton needs nothing from the launcher: build it now,
	// while the launcher starts. Rootless, files cannot be created until
	// the launcher has written the id maps, so it waits for "go".
	int built = 0;
	if (geteuid() == 0) {
		skeleton();
		prefetch(); // while the launcher starts
		built = 1;
	}
	char buf[64];
	char oob[CMSG_SPACE(4 * sizeof(int))];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = oob, .msg_controllen = sizeof oob};
	ssize_t n;
	do
		n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		_exit(0); // the launcher did not need us
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(4 * sizeof(int)))
		_exit(122);
	int got[4];
	memcpy(got, CMSG_DATA(c), sizeof got);
	// stdin, stdout, stderr, then the program pipe on SPEC_FD: what the
	// exec path's init finds.
	for (int i = 0; i < 4; i++) {
		// The fds arrived close-on-exec (MSG_CMSG_CLOEXEC), possibly
		// already on 0-3: dup2 onto itself keeps that flag, so clear it.
		if ((got[i] != i && dup2(got[i], i) < 0) || fcntl(i, F_SETFD, 0) < 0)
			_exit(123);
	}
	for (int i = 0; i < 4; i++)
		if (got[i] > 3)
			close(got[i]);
	syscall(SYS_close_range, STATUS_FD + 1, ~0U, 0);
	_exit(nsinit_main(built));
}

static void prespawn(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	prespawn_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
	int now = CLONE_NEWPID; // unshare cannot move the caller into a new pid namespace
	if (geteuid() != 0) {
		prespawn_flags |= CLONE_NEWUSER;
		now |= CLONE_NEWUSER; // first, for the rights to make the others
	}
	prespawn_later = prespawn_flags & ~now;
	// The child starts with every signal blocked (the init unblocks what
	// it waits for); no handler of the parent's may run in it.
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	int pidfd = -1;
	pid_t pid = syscall(SYS_clone, now | CLONE_PIDFD | SIGCHLD, 0, &pidfd, 0, 0);
	int err = errno;
	if (pid == 0)
		prespawn_child(sv[1]);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		prespawn_pid = -err;
		return;
	}
	fcntl(pidfd, F_SETFD, FD_CLOEXEC); // CLONE_PIDFD sets it; be explicit
	prespawn_pidfd = pidfd;
	prespawn_pid = pid;
	prespawn_sock = sv[0];
}

// nc_prespawn_take hands the pre-spawned init to the launcher, once (two
// Starts may race for it): it returns the socket and sets *pid and *pidfd,
// or returns -1 with *pid = -errno (0 when none was started).
int nc_prespawn_take(int *pid, int *pidfd, int *flags)
{
	static int taken;
	*pid = 0;
	*pidfd = -1;
	*flags = prespawn_flags;
	if (prespawn_sock < 0) {
		*pid = prespawn_pid < 0 ? prespawn_pid : 0;
		return -1;
	}
	if (__atomic_exchange_n(&taken, 1, __ATOMIC_ACQ_REL))
		return -1;
	*pid = prespawn_pid;
	*pidfd = prespawn_pidfd;
	return prespawn_sock;
}

// ensure_std_fds fills a closed 0, 1 or 2 with /dev/null, as setuid
// programs do. A launcher started with one closed (`<&-`) would otherwise
// give that number to its next descriptor, the socket to its own init
// among them, and hand it to the agent as the stream: an agent that read
// the launcher's messages and wrote the init's.
static void ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY); // the lowest free: fd
		if (n >= 0 && n != fd) {
			dup2(n, fd);
			close(n);
		}
	}
}

__attribute__((constructor)) static void nemoclaw_sandbox_init(int argc, char **argv, char **envp)
{
	if (argc >= 2 && strcmp(argv[1], "__sandbox-init") == 0)
		_exit(nsinit_main(0));
	ensure_std_fds();
	if (wants_prespawn(argc, argv)) {
		saved_argv = argv;
		saved_envp = envp;
		prespawn();
	}
}
