/*
 * cfsx: a file-data exerciser in the spirit of xfstests' fsx, written from scratch for cachefs.
 *
 * What it guarantees: every byte cfsx reads back from the file under test (pread, mmap,
 * O_DIRECT pread, the whole file at the end) is compared with an in-memory model of what the
 * file must hold, and the file's size (fstat) is compared with the model after every
 * operation. The first disagreement stops the run with a report: the operation, the last 30
 * operations, the first differing offset, expected and got bytes, and a guess at where the
 * wrong bytes came from. cfsx exits 0 only when all operations and the final whole-file check
 * agreed with the model; 1 on a mismatch (data or size); 2 when a system call failed or the
 * command line is wrong; 3 when a worker died by a signal.
 *
 * The model: a buffer of maxlen bytes (-l) and an expected size. Invariant: every model byte
 * at or past the expected size is zero, so a write or a truncate past the end (a hole) needs
 * no special case: the hole already reads as zeros in the model.
 *
 * Operations (chosen by a seeded PRNG, -S; weights with -o):
 *   read      pread, compared with the model (also past EOF: short reads are checked)
 *   write     pwrite of fresh bytes at any offset, also past EOF (a hole in between)
 *   mapread   mmap(PROT_READ, MAP_SHARED) of a range inside the file, compared
 *   mapwrite  ftruncate up first if the range ends past EOF, then write through
 *             mmap(PROT_WRITE, MAP_SHARED) and msync(MS_SYNC)
 *   truncate  ftruncate to any size, up (a hole) or down
 *   copy      copy_file_range from one region of the file to another, non-overlapping one
 *             (the destination may lie past EOF); falls back to pread+pwrite when the kernel
 *             or file system refuses (ENOSYS, EXDEV, EOPNOTSUPP, EINVAL), noted once
 *   dioread   pread through a second descriptor opened with O_DIRECT (4096-aligned offset,
 *   diowrite  length and buffer) / pwrite through it
 *   fsync     fsync or fdatasync
 *   reopen    close both descriptors and open them again (chance 1 in -c per operation)
 *
 * The bytes an operation writes are a function of (seed, operation number, file offset),
 * so a report can say which earlier operation wrote the wrong bytes that were read back
 * (stale data), or that they are zeros (a lost write).
 *
 * -P n forks n workers on the same file. The model, the expected size and the op log live in
 * a MAP_SHARED anonymous mapping made before the fork; every operation (including its size
 * check) runs under an flock on a private lock file outside the file system under test, so
 * operations of different workers interleave but each one is atomic with respect to the
 * model. Worker i draws from its own PRNG stream, seeded with seed+i.
 *
 * -O file records every operation, one per line, as it starts (so a failing one is the last
 * line); -R file replays such a record instead of drawing random operations, with the same -S
 * for the same bytes; a record made with -P names each operation's worker, and replayed with
 * -P the workers take their turns in the recorded order (the same interleaving). Lines may be
 * removed to shrink a failing case (bench/fsx-minimize.ts does): the executor clips or skips
 * operations that no longer fit the file.
 *
 * Start: an empty file (O_TRUNC), or with -i model the file as it is, which must equal the
 * model (checked whole, unless -n). End: the whole file is checked from a fresh descriptor,
 * and -w writes the model out, for comparing the backend's copy after a sync.
 *
 * Build: gcc -O2 -Wall -Wextra -D_GNU_SOURCE -o cfsx cfsx.c
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ operations */

enum opkind {
	OP_READ, OP_WRITE, OP_MAPREAD, OP_MAPWRITE, OP_TRUNCATE, OP_COPY,
	OP_DIOREAD, OP_DIOWRITE, OP_FSYNC, OP_REOPEN, OP_COUNT
};

static const char *const opnames[OP_COUNT] = {
	"read", "write", "mapread", "mapwrite", "truncate", "copy",
	"dioread", "diowrite", "fsync", "reopen",
};

/* Default weights; reopen is not drawn by weight but with chance 1 in -c. */
static unsigned weights[OP_COUNT] = {
	[OP_READ] = 4, [OP_WRITE] = 4, [OP_MAPREAD] = 2, [OP_MAPWRITE] = 2,
	[OP_TRUNCATE] = 2, [OP_COPY] = 2, [OP_DIOREAD] = 1, [OP_DIOWRITE] = 1,
	[OP_FSYNC] = 1, [OP_REOPEN] = 0,
};

/*
 * One operation's parameters. read/write/mapread/mapwrite/dioread/diowrite: off, len.
 * truncate: off is the new size. copy: off is the source, len, dst the destination.
 * fsync: len 1 means fdatasync.
 */
struct op {
	int kind;
	uint64_t off, len, dst;
};

/* Flags of a log entry: what an operation turned out to do. */
#define LF_HOLE     0x01 /* started past EOF: a hole from the old EOF to off */
#define LF_EXTEND   0x02 /* the file grew */
#define LF_SHRINK   0x04 /* the file shrank */
#define LF_FALLBACK 0x08 /* copy done with pread+pwrite */
#define LF_SKIPPED  0x10 /* nothing to do (e.g. mapread of an empty file) */
#define LF_CLIPPED  0x20 /* parameters clipped to fit the file (replays) */
#define LF_DATASYNC 0x40 /* fsync was fdatasync */

struct logent {
	uint64_t num;          /* operation number, 1-based, global across workers */
	int worker;
	struct op op;          /* parameters as executed (after clipping) */
	uint64_t size_before, size_after;
	unsigned flags;
};

#define LOGSIZE 30

/* What the workers share (a MAP_SHARED anonymous mapping, or plain memory without -P). */
struct shared {
	uint64_t size;               /* expected file size */
	uint64_t opnum;              /* operations started so far */
	uint64_t nlog;               /* entries ever logged; the ring holds the last LOGSIZE */
	struct logent log[LOGSIZE];
	int failed;                  /* a worker stopped on a failure: the others stop too */
	unsigned disabled;           /* bit per opkind disabled at run time */
	unsigned noted;              /* bit per note already printed */
	uint64_t counts[OP_COUNT];   /* operations performed, by kind */
	uint64_t copy_fallbacks;
	uint64_t replay_next;        /* -R: the next recorded operation to run */
	unsigned char model[];       /* maxlen bytes */
};

/* Notes printed once (bits of shared.noted). */
#define NOTE_DIO_EINVAL  0x01
#define NOTE_MMAP_ENODEV 0x02
#define NOTE_CFR_BASE    0x10  /* + index of the errno in cfr_errnos */

static const int cfr_errnos[] = { ENOSYS, EXDEV, EOPNOTSUPP, EINVAL };

/* ------------------------------------------------------------------ settings and state */

static uint64_t maxlen = 1024 * 1024;   /* -l */
static uint64_t maxoplen = 64 * 1024;   /* -m */
static uint64_t nops = 10000;           /* -N */
static int nops_given;
static uint64_t seed = 1;               /* -S */
static unsigned reopen_chance = 50;     /* -c: 1 in this many ops is a reopen; 0: never */
static int fsync_after_write;           /* -f */
static int nprocs = 1;                  /* -P */
static int verbose;                     /* -v */
static int no_initial_check;            /* -n */
static const char *model_out;           /* -w */
static const char *model_in;            /* -i */
static const char *record_path;         /* -O */
static const char *replay_path;         /* -R */
static const char *fname;               /* the file under test */

static struct shared *sh;
static int sh_ready;                    /* sh is mapped: reports may show the op log */
static int worker;                      /* 0..nprocs-1 */
static int fd = -1, dfd = -1;           /* buffered and O_DIRECT descriptors */
static int lockfd = -1;                 /* flock target with -P */
static FILE *record;                    /* -O */
/* -R: the recorded operations, and which worker ran each (with -P they run in that order,
 * each by its worker: the same interleaving) */
struct recorded { struct op op; int worker; };
static struct recorded *replay;
static uint64_t nreplay;
static unsigned char *buf;              /* scratch, maxlen bytes */
static unsigned char *dbuf;             /* scratch for O_DIRECT, 4096-aligned, maxlen bytes */
static long pagesize;
static uint64_t cur;                    /* number of the operation in progress */
static struct op curop;
static int final_phase;                 /* the whole-file check after the last operation */

#define DIO_ALIGN 4096u

/* ------------------------------------------------------------------ PRNG */

/* splitmix64: one 64-bit state, good statistical quality, trivially seedable. */
static uint64_t rng_state;

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rnd(void)
{
	rng_state += 0x9e3779b97f4a7c15ULL;
	return mix64(rng_state);
}

/* Uniform in [0, n); n > 0. The modulo bias is negligible for n far below 2^64. */
static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/*
 * The byte operation `num` writes at file offset `pos`: random-looking, but recomputable,
 * so a report can name the operation that wrote bytes found in the wrong place.
 */
static unsigned char data_byte(uint64_t num, uint64_t pos)
{
	uint64_t w = mix64(seed * 0x2545f4914f6cdd1dULL ^ mix64(num) ^ ((pos >> 3) * 0x9e3779b97f4a7c15ULL));
	return (unsigned char)(w >> ((pos & 7) * 8));
}

static void fill_data(unsigned char *p, uint64_t num, uint64_t off, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		p[i] = data_byte(num, off + i);
}

/* ------------------------------------------------------------------ reporting */

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

static void format_op(char *out, size_t n, const struct logent *l)
{
	const struct op *o = &l->op;
	char what[160];
	switch (o->len || o->kind == OP_TRUNCATE ? o->kind : OP_FSYNC) {
	case OP_TRUNCATE:
		snprintf(what, sizeof what, "to 0x%" PRIx64, o->off);
		break;
	case OP_COPY:
		snprintf(what, sizeof what, "0x%" PRIx64 "..0x%" PRIx64 " -> 0x%" PRIx64 "..0x%" PRIx64 " (0x%" PRIx64 " bytes)",
			 o->off, o->off + o->len - 1, o->dst, o->dst + o->len - 1, o->len);
		break;
	case OP_FSYNC:
	case OP_REOPEN:
		what[0] = 0;
		break;
	default:
		snprintf(what, sizeof what, "0x%" PRIx64 "..0x%" PRIx64 " (0x%" PRIx64 " bytes)",
			 o->off, o->off + o->len - 1, o->len);
	}
	char flags[120] = "";
	if (l->flags & LF_HOLE) snprintf(flags + strlen(flags), sizeof flags - strlen(flags), " hole 0x%" PRIx64 "..0x%" PRIx64, l->size_before, (o->kind == OP_COPY ? o->dst : o->off) - 1);
	if (l->flags & LF_FALLBACK) strcat(flags, " (pread+pwrite)");
	if (l->flags & LF_SKIPPED) strcat(flags, " skipped");
	if (l->flags & LF_CLIPPED) strcat(flags, " clipped");
	if (l->flags & LF_DATASYNC) strcat(flags, " fdatasync");
	char sizes[80] = "", who[8] = "";
	if (nprocs > 1) snprintf(who, sizeof who, "[w%d] ", l->worker);
	if (l->size_after != l->size_before)
		snprintf(sizes, sizeof sizes, " size 0x%" PRIx64 " -> 0x%" PRIx64, l->size_before, l->size_after);
	else
		snprintf(sizes, sizeof sizes, " size 0x%" PRIx64, l->size_after);
	snprintf(out, n, "%7" PRIu64 " %s%-8s %s%s%s", l->num, who, opnames[o->kind], what, sizes, flags);
}

static void print_log(void)
{
	uint64_t n = sh->nlog < LOGSIZE ? sh->nlog : LOGSIZE;
	printf("  last %" PRIu64 " operations (oldest first):\n", n);
	for (uint64_t i = sh->nlog - n; i < sh->nlog; i++) {
		struct logent l = sh->log[i % LOGSIZE];
		int failing = !final_phase && l.num == cur && l.worker == worker;
		if (failing) l.size_after = sh->size;   /* the model as far as the op got */
		char line[400];
		format_op(line, sizeof line, &l);
		printf("  %s%s\n", line, failing ? "   <- failed here" : "");
	}
}

/* "op 12 (write)", or "the initial check" before the first operation. */
static const char *where(void)
{
	static char w[64];
	if (final_phase) snprintf(w, sizeof w, "the final check, after op %" PRIu64, cur);
	else if (cur) snprintf(w, sizeof w, "op %" PRIu64 " (%s)", cur, opnames[curop.kind]);
	else snprintf(w, sizeof w, "the initial check");
	return w;
}

static void print_repro(void)
{
	if (!cur || final_phase) return;
	printf("  seed %" PRIu64 ", worker %d: the same command with -N %" PRIu64 " stops at this operation%s\n",
	       seed, worker, cur, nprocs > 1 ? " (with -P, the same interleaving needs a record: -O, then -R)" : "");
}

/* A system call failed: name it with its errno, show the log, exit 2. */
static void die_errno(const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	printf("cfsx: ERROR at %s: ", where());
	vprintf(fmt, ap);
	va_end(ap);
	printf(": %s (%s)\n", errname(e), strerror(e));
	if (sh_ready) {
		sh->failed = 1;
		print_log();
		print_repro();
	}
	fflush(stdout);
	exit(2);
}

static void usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "cfsx: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(2);
}

static void hexrow(const char *label, const unsigned char *p, uint64_t from, uint64_t to, uint64_t mark)
{
	printf("    %-9s", label);
	for (uint64_t i = from; i < to; i++)
		printf(i == mark ? "[%02x]" : " %02x ", p[i]);
	printf("\n");
}

/*
 * `got` (len bytes, read from file offset off) differs from the model: report and exit 1.
 * `how` says how the bytes were read.
 */
static void fail_data(const char *how, const unsigned char *got, uint64_t off, uint64_t len)
{
	const unsigned char *want = sh->model + off;
	uint64_t first = 0, last = 0, ndiff = 0;
	for (uint64_t i = 0; i < len; i++)
		if (got[i] != want[i]) {
			if (!ndiff) first = i;
			last = i;
			ndiff++;
		}
	sh->failed = 1;
	printf("cfsx: MISMATCH at %s: %s of 0x%" PRIx64 "..0x%" PRIx64 " returned wrong bytes\n",
	       where(), how, off, off + len - 1);
	printf("  first differing offset 0x%" PRIx64 "; 0x%" PRIx64 " bytes differ, the last at 0x%" PRIx64 "; expected file size 0x%" PRIx64 "\n",
	       off + first, ndiff, off + last, sh->size);
	uint64_t from = first >= 8 ? first - 8 : 0;
	uint64_t to = from + 16 <= len ? from + 16 : len;
	if (to - from < 16 && to >= 16) from = to - 16;
	printf("    %-9s", "offset");
	for (uint64_t i = from; i < to; i++)
		printf(" %02" PRIx64 " ", (off + i) & 0xff);
	printf("   (low byte of the offset; [..] is the first difference at 0x%" PRIx64 ")\n", off + first);
	hexrow("expected", want, from, to, first);
	hexrow("got", got, from, to, first);

	/* Where did the wrong bytes come from? Look at the run of differing bytes at `first`. */
	uint64_t run = 0;
	while (first + run < len && run < 64 && got[first + run] != want[first + run])
		run++;
	int zeros = 1;
	for (uint64_t i = 0; i < run; i++)
		if (got[first + i]) zeros = 0;
	if (zeros) {
		printf("  the wrong bytes are zeros: a lost write, or a hole where data belongs\n");
	} else if (run >= 4) {
		uint64_t who = 0;
		for (uint64_t n = cur; n >= 1 && !who; n--) {
			uint64_t i = 0;
			while (i < run && data_byte(n, off + first + i) == got[first + i])
				i++;
			if (i == run) who = n;
		}
		if (who)
			printf("  the wrong bytes are what op %" PRIu64 " wrote at this offset: stale data (a later change was lost or not seen)\n", who);
		else
			printf("  the wrong bytes are not what any write wrote at this offset (shifted, copied or foreign data)\n");
	}
	print_log();
	print_repro();
	fflush(stdout);
	exit(1);
}

static void fail_size(const char *what, uint64_t got)
{
	sh->failed = 1;
	printf("cfsx: SIZE MISMATCH at %s: %s says 0x%" PRIx64 " (%" PRIu64 "), expected 0x%" PRIx64 " (%" PRIu64 ")\n",
	       where(), what, got, got, sh->size, sh->size);
	print_log();
	print_repro();
	fflush(stdout);
	exit(1);
}

static void note_once(unsigned bit, const char *fmt, ...)
{
	if (sh->noted & bit) return;
	sh->noted |= bit;
	va_list ap;
	va_start(ap, fmt);
	printf("cfsx: note: ");
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* ------------------------------------------------------------------ locking (-P) */

static void lock_ops(void)
{
	if (lockfd >= 0 && flock(lockfd, LOCK_EX) < 0) die_errno("flock(lock file)");
}

static void unlock_ops(void)
{
	if (lockfd >= 0 && flock(lockfd, LOCK_UN) < 0) die_errno("flock(LOCK_UN)");
}

/* ------------------------------------------------------------------ file and I/O helpers */

static void open_files(int flags)
{
	fd = open(fname, O_RDWR | flags, 0644);
	if (fd < 0) die_errno("open(%s)", fname);
	dfd = -1;
	if (sh->disabled & (1u << OP_DIOREAD)) return;
	dfd = open(fname, O_RDWR | O_DIRECT);
	if (dfd < 0) {
		if (errno != EINVAL) die_errno("open(%s, O_DIRECT)", fname);
		sh->disabled |= (1u << OP_DIOREAD) | (1u << OP_DIOWRITE);
		note_once(NOTE_DIO_EINVAL, "open with O_DIRECT fails with EINVAL here: dioread and diowrite are disabled");
	}
}

static void close_files(void)
{
	if (fd >= 0 && close(fd) < 0) die_errno("close");
	if (dfd >= 0 && close(dfd) < 0) die_errno("close(O_DIRECT descriptor)");
	fd = dfd = -1;
}

/* pread until len bytes or EOF; returns the count. */
static uint64_t read_full(int f, unsigned char *p, uint64_t off, uint64_t len, const char *what)
{
	uint64_t done = 0;
	while (done < len) {
		ssize_t r = pread(f, p + done, len - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR) continue;
			die_errno("%s(off 0x%" PRIx64 ", len 0x%" PRIx64 ")", what, off + done, len - done);
		}
		if (r == 0) break;
		done += (uint64_t)r;
	}
	return done;
}

static void write_full(int f, const unsigned char *p, uint64_t off, uint64_t len, const char *what)
{
	uint64_t done = 0;
	while (done < len) {
		ssize_t r = pwrite(f, p + done, len - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR) continue;
			die_errno("%s(off 0x%" PRIx64 ", len 0x%" PRIx64 ")", what, off + done, len - done);
		}
		if (r == 0) {
			errno = EIO;
			die_errno("%s(off 0x%" PRIx64 ") wrote nothing", what, off + done);
		}
		done += (uint64_t)r;
	}
}

/* Read `len` bytes at `off` with pread on f and compare with the model (size and bytes). */
static void check_range(int f, unsigned char *p, uint64_t off, uint64_t len, const char *how)
{
	uint64_t expect = off >= sh->size ? 0 : (len < sh->size - off ? len : sh->size - off);
	uint64_t got = read_full(f, p, off, len, how);
	uint64_t n = got < expect ? got : expect;
	if (memcmp(p, sh->model + off, n) != 0) fail_data(how, p, off, n);
	if (got != expect) {
		char what[120];
		snprintf(what, sizeof what, "%s of 0x%" PRIx64 " bytes at 0x%" PRIx64 " got 0x%" PRIx64 " bytes, so EOF",
			 how, len, off, got);
		fail_size(what, off + got);
	}
}

/* The model after bytes [off, off+len) were written with `p`. */
static void model_write(const unsigned char *p, uint64_t off, uint64_t len)
{
	memcpy(sh->model + off, p, len);
	if (off + len > sh->size) sh->size = off + len;
}

static void model_truncate(uint64_t size)
{
	if (size < sh->size) memset(sh->model + size, 0, sh->size - size);
	sh->size = size;
}

static void maybe_fsync(void)
{
	if (fsync_after_write && fsync(fd) < 0) die_errno("fsync (-f)");
}

/* SIGBUS/SIGSEGV while touching a mapping: report as a failure, not a crash. */
static sigjmp_buf map_jmp;
static volatile sig_atomic_t in_map;

static void on_fault(int sig)
{
	if (in_map) siglongjmp(map_jmp, sig);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void fail_fault(int sig, uint64_t off, uint64_t len)
{
	sh->failed = 1;
	printf("cfsx: MISMATCH at %s: %s touching the mapping of 0x%" PRIx64 "..0x%" PRIx64
	       " (expected file size 0x%" PRIx64 "): the kernel could not read a page of it (the file system's read failed, or the file is shorter than it should be)\n",
	       where(), sig == SIGBUS ? "SIGBUS" : "SIGSEGV", off, off + len - 1, sh->size);
	print_log();
	print_repro();
	fflush(stdout);
	exit(1);
}

/* ------------------------------------------------------------------ the operations */

static void do_read(struct logent *l)
{
	check_range(fd, buf, l->op.off, l->op.len, "pread");
}

static void do_write(struct logent *l)
{
	fill_data(buf, l->num, l->op.off, l->op.len);
	write_full(fd, buf, l->op.off, l->op.len, "pwrite");
	model_write(buf, l->op.off, l->op.len);
	maybe_fsync();
}

static void do_mapread(struct logent *l)
{
	struct op *o = &l->op;
	if (sh->size == 0) { l->flags |= LF_SKIPPED; return; }
	/* A mapping must stay inside the file (SIGBUS past the last page): clip to EOF. */
	if (o->off >= sh->size) { o->off = o->off % sh->size; l->flags |= LF_CLIPPED; }
	if (o->off + o->len > sh->size) { o->len = sh->size - o->off; l->flags |= LF_CLIPPED; }
	uint64_t pg = o->off & ~(uint64_t)(pagesize - 1);
	size_t maplen = (size_t)(o->off + o->len - pg);
	unsigned char *p = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, (off_t)pg);
	if (p == MAP_FAILED) die_errno("mmap(PROT_READ, off 0x%" PRIx64 ", len 0x%zx)", pg, maplen);
	int sig = sigsetjmp(map_jmp, 1);
	if (sig) { in_map = 0; fail_fault(sig, o->off, o->len); }
	in_map = 1;
	memcpy(buf, p + (o->off - pg), o->len);   /* copy out first: a fault lands here */
	in_map = 0;
	if (munmap(p, maplen) < 0) die_errno("munmap");
	if (memcmp(buf, sh->model + o->off, o->len) != 0) fail_data("mmap read", buf, o->off, o->len);
}

static void do_mapwrite(struct logent *l)
{
	struct op *o = &l->op;
	if (o->off + o->len > sh->size) {
		/* A mapping cannot grow a file: extend it first (a truncate up, maybe a hole). */
		if (ftruncate(fd, (off_t)(o->off + o->len)) < 0) die_errno("ftruncate(0x%" PRIx64 ") before mmap write", o->off + o->len);
		model_truncate(o->off + o->len);
	}
	uint64_t pg = o->off & ~(uint64_t)(pagesize - 1);
	size_t maplen = (size_t)(o->off + o->len - pg);
	unsigned char *p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)pg);
	if (p == MAP_FAILED) die_errno("mmap(PROT_WRITE, off 0x%" PRIx64 ", len 0x%zx)", pg, maplen);
	fill_data(buf, l->num, o->off, o->len);
	int sig = sigsetjmp(map_jmp, 1);
	if (sig) { in_map = 0; fail_fault(sig, o->off, o->len); }
	in_map = 1;
	memcpy(p + (o->off - pg), buf, o->len);
	in_map = 0;
	if (msync(p, maplen, MS_SYNC) < 0) die_errno("msync(MS_SYNC)");
	if (munmap(p, maplen) < 0) die_errno("munmap");
	model_write(buf, o->off, o->len);
	maybe_fsync();
}

static void do_truncate(struct logent *l)
{
	if (ftruncate(fd, (off_t)l->op.off) < 0) die_errno("ftruncate(0x%" PRIx64 ")", l->op.off);
	model_truncate(l->op.off);
	maybe_fsync();
}

static int copy_fallback_errno(int e)
{
	for (size_t i = 0; i < sizeof cfr_errnos / sizeof cfr_errnos[0]; i++)
		if (cfr_errnos[i] == e) return (int)i;
	return -1;
}

static void do_copy(struct logent *l)
{
	struct op *o = &l->op;
	/* Keep it valid on the current file: source inside it, ranges apart, within maxlen. */
	if (o->off >= sh->size || o->len == 0) { l->flags |= LF_SKIPPED; return; }
	if (o->off + o->len > sh->size) { o->len = sh->size - o->off; l->flags |= LF_CLIPPED; }
	if (o->dst + o->len > maxlen) { o->len = maxlen - o->dst; l->flags |= LF_CLIPPED; }
	if (o->len == 0 || (o->dst < o->off + o->len && o->off < o->dst + o->len)) { l->flags |= LF_SKIPPED; return; }
	if (o->dst > sh->size) l->flags |= LF_HOLE;

	uint64_t done = 0;
	while (done < o->len) {
		loff_t in = (loff_t)(o->off + done), out = (loff_t)(o->dst + done);
		ssize_t r = copy_file_range(fd, &in, fd, &out, o->len - done, 0);
		if (r < 0) {
			if (errno == EINTR) continue;
			int k = copy_fallback_errno(errno);
			if (k < 0) die_errno("copy_file_range(0x%" PRIx64 " -> 0x%" PRIx64 ", len 0x%" PRIx64 ")",
					     o->off + done, o->dst + done, o->len - done);
			note_once(NOTE_CFR_BASE << k, "copy_file_range fails with %s here: copying with pread+pwrite instead (counted in the summary)",
				  errname(errno));
			/* The rest by hand; what is read is checked like any read. */
			uint64_t rest = o->len - done;
			check_range(fd, buf, o->off + done, rest, "pread (copy fallback)");
			write_full(fd, buf, o->dst + done, rest, "pwrite (copy fallback)");
			l->flags |= LF_FALLBACK;
			sh->copy_fallbacks++;
			break;
		}
		if (r == 0) {
			char what[120];
			snprintf(what, sizeof what, "copy_file_range found EOF at source offset 0x%" PRIx64 ", so the file size", o->off + done);
			fail_size(what, o->off + done);
		}
		done += (uint64_t)r;
	}
	memmove(sh->model + o->dst, sh->model + o->off, o->len);
	if (o->dst + o->len > sh->size) sh->size = o->dst + o->len;
	maybe_fsync();
}

static void do_dioread(struct logent *l)
{
	check_range(dfd, dbuf, l->op.off, l->op.len, "O_DIRECT pread");
}

static void do_diowrite(struct logent *l)
{
	fill_data(dbuf, l->num, l->op.off, l->op.len);
	write_full(dfd, dbuf, l->op.off, l->op.len, "O_DIRECT pwrite");
	model_write(dbuf, l->op.off, l->op.len);
	maybe_fsync();
}

static void do_fsync(struct logent *l)
{
	if (l->op.len) {
		l->flags |= LF_DATASYNC;
		if (fdatasync(fd) < 0) die_errno("fdatasync");
	} else if (fsync(fd) < 0) {
		die_errno("fsync");
	}
}

static void do_reopen(struct logent *l)
{
	(void)l;
	close_files();
	open_files(0);
}

/* ------------------------------------------------------------------ choosing operations */

/* A position in [0, limit]: anywhere, inside the file, near EOF, or near a round boundary. */
static uint64_t pick_pos(uint64_t limit)
{
	static const uint64_t bounds[] = { 4096, 65536, 131072, 262144, 1048576 };
	uint64_t size = sh->size < limit ? sh->size : limit, p;
	switch (below(10)) {
	case 0: case 1: case 2:
		p = below(limit + 1);
		break;
	case 3: case 4: case 5:
		p = below(size + 1);
		break;
	case 6: case 7: {
		int64_t d = (int64_t)below(12288) - 4096;  /* -4 KiB .. +8 KiB around EOF */
		p = (int64_t)size + d < 0 ? 0 : (uint64_t)((int64_t)size + d);
		break;
	}
	default: {
		uint64_t b = bounds[below(sizeof bounds / sizeof bounds[0])];
		p = below(limit / b + 1) * b;
		int64_t d = (int64_t)below(129) - 64;
		p = (int64_t)p + d < 0 ? 0 : (uint64_t)((int64_t)p + d);
	}
	}
	return p > limit ? limit : p;
}

static uint64_t pick_len(void)
{
	/* Mostly small, sometimes up to maxoplen: small ops make many boundaries per file. */
	return below(4) ? 1 + below(maxoplen < 4096 ? maxoplen : 4096) : 1 + below(maxoplen);
}

static int enabled(int k)
{
	return weights[k] && !(sh->disabled & (1u << k));
}

static void gen_op(struct op *o)
{
	memset(o, 0, sizeof *o);
	if (reopen_chance && below(reopen_chance) == 0) {
		o->kind = OP_REOPEN;
		return;
	}
	unsigned total = 0;
	for (int k = 0; k < OP_COUNT; k++)
		if (enabled(k)) total += weights[k];
	if (!total) usage_error("every operation is disabled");
	uint64_t r = below(total);
	for (o->kind = 0; o->kind < OP_COUNT; o->kind++) {
		if (!enabled(o->kind)) continue;
		if (r < weights[o->kind]) break;
		r -= weights[o->kind];
	}
	switch (o->kind) {
	case OP_READ:
		/* mostly inside the file, sometimes reaching past EOF */
		o->off = below(8) ? below(sh->size + 1) : pick_pos(maxlen);
		o->len = pick_len();
		break;
	case OP_MAPREAD:
		o->off = below(sh->size ? sh->size : 1);
		o->len = pick_len();
		if (o->off + o->len > sh->size && sh->size) o->len = sh->size - o->off;
		break;
	case OP_WRITE:
	case OP_MAPWRITE:
		o->off = pick_pos(maxlen - 1);
		o->len = pick_len();
		if (o->off + o->len > maxlen) o->len = maxlen - o->off;
		break;
	case OP_TRUNCATE:
		o->off = below(6) ? pick_pos(maxlen) : below(sh->size + 1);  /* down more often than up */
		break;
	case OP_COPY:
		o->len = pick_len();
		o->off = below(sh->size ? sh->size : 1);
		if (o->off + o->len > sh->size) o->len = sh->size > o->off ? sh->size - o->off : 0;
		/* a destination apart from the source: before it or after it, maybe past EOF */
		for (int tries = 0; tries < 8; tries++) {
			o->dst = pick_pos(maxlen - o->len);
			if (o->dst + o->len <= o->off || o->dst >= o->off + o->len) break;
		}
		break;
	case OP_DIOREAD:
		o->off = (below(8) ? below(sh->size + 1) : pick_pos(maxlen)) / DIO_ALIGN * DIO_ALIGN;
		o->len = (pick_len() + DIO_ALIGN - 1) / DIO_ALIGN * DIO_ALIGN;
		if (o->off + o->len > maxlen) o->off = (maxlen - o->len) / DIO_ALIGN * DIO_ALIGN;
		break;
	case OP_DIOWRITE:
		o->len = (pick_len() + DIO_ALIGN - 1) / DIO_ALIGN * DIO_ALIGN;
		o->off = pick_pos(maxlen - o->len) / DIO_ALIGN * DIO_ALIGN;
		break;
	case OP_FSYNC:
		o->len = below(2);
		break;
	}
}

/*
 * Reads a -R record: one operation per line ("write 0x1000 0x200", "copy src len dst",
 * "truncate size", "fsync", "fdatasync", "reopen"), with " @n" when worker n ran it.
 */
static void load_replay(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) die_errno("open(%s) (-R)", path);
	char line[256];
	uint64_t cap = 0;
	while (fgets(line, sizeof line, f)) {
		char name[32];
		long long a = 0, b = 0, c = 0;
		if (line[0] == '#' || line[0] == '\n') continue;
		if (sscanf(line, "%31s %lli %lli %lli", name, &a, &b, &c) < 1) continue;
		if (nreplay == cap) {
			cap = cap ? cap * 2 : 1024;
			replay = realloc(replay, cap * sizeof *replay);
			if (!replay) usage_error("out of memory");
		}
		struct recorded *r = &replay[nreplay++];
		memset(r, 0, sizeof *r);
		const char *at = strchr(line, '@');
		r->worker = at ? atoi(at + 1) : 0;
		struct op *o = &r->op;
		for (o->kind = 0; o->kind < OP_COUNT && strcmp(opnames[o->kind], name); o->kind++)
			;
		if (o->kind == OP_COUNT) {
			if (strcmp(name, "fdatasync")) usage_error("%s: unknown operation in line: %s", path, line);
			o->kind = OP_FSYNC;
			o->len = 1;
			continue;
		}
		if (a < 0 || b < 0 || c < 0) usage_error("%s: negative number in line: %s", path, line);
		o->off = (uint64_t)a;
		o->len = (uint64_t)b;
		o->dst = (uint64_t)c;
	}
	if (ferror(f)) die_errno("read(%s) (-R)", path);
	fclose(f);
}

static void record_op(const struct logent *l)
{
	const struct op *o = &l->op;
	switch (o->kind) {
	case OP_TRUNCATE: fprintf(record, "truncate 0x%" PRIx64, o->off); break;
	case OP_COPY: fprintf(record, "copy 0x%" PRIx64 " 0x%" PRIx64 " 0x%" PRIx64, o->off, o->len, o->dst); break;
	case OP_FSYNC: fprintf(record, "%s", o->len ? "fdatasync" : "fsync"); break;
	case OP_REOPEN: fprintf(record, "reopen"); break;
	default: fprintf(record, "%s 0x%" PRIx64 " 0x%" PRIx64, opnames[o->kind], o->off, o->len);
	}
	if (nprocs > 1) fprintf(record, " @%d", l->worker);
	fprintf(record, "\n");
	fflush(record);
}

/* Makes replayed parameters safe to execute (generated ones always are). */
static void sanitize(struct logent *l)
{
	struct op *o = &l->op;
	uint64_t len0 = o->len, off0 = o->off;
	if (o->kind == OP_TRUNCATE) {
		if (o->off > maxlen) o->off = maxlen;
	} else if (o->kind == OP_COPY) {
		if (o->dst > maxlen) o->dst = maxlen;
	} else if (o->kind != OP_FSYNC && o->kind != OP_REOPEN) {
		if (o->len > maxlen) o->len = maxlen;
		if (o->off > maxlen - o->len) o->off = maxlen - o->len;
		if (o->kind == OP_DIOREAD || o->kind == OP_DIOWRITE) {
			o->off = o->off / DIO_ALIGN * DIO_ALIGN;
			o->len = o->len / DIO_ALIGN * DIO_ALIGN;
			if (!o->len) o->len = DIO_ALIGN;
		}
	}
	if (o->len != len0 || o->off != off0) l->flags |= LF_CLIPPED;
}

/* ------------------------------------------------------------------ one operation */

static void run_op(uint64_t num, const struct op *op)
{
	cur = num;
	curop = *op;
	struct logent *l = &sh->log[sh->nlog % LOGSIZE];
	memset(l, 0, sizeof *l);
	l->num = num;
	l->worker = worker;
	l->op = *op;
	l->size_before = l->size_after = sh->size;
	sh->nlog++;
	if (record) record_op(l);   /* before it runs: a failing op is in the record too */
	if (replay_path) sanitize(l);
	if ((l->op.kind == OP_DIOREAD || l->op.kind == OP_DIOWRITE) && dfd < 0) l->flags |= LF_SKIPPED;
	else if ((l->op.kind == OP_MAPREAD || l->op.kind == OP_MAPWRITE) && (sh->disabled & (1u << OP_MAPREAD))) l->flags |= LF_SKIPPED;
	else switch (l->op.kind) {
	case OP_READ: do_read(l); break;
	case OP_WRITE: do_write(l); break;
	case OP_MAPREAD: do_mapread(l); break;
	case OP_MAPWRITE: do_mapwrite(l); break;
	case OP_TRUNCATE: do_truncate(l); break;
	case OP_COPY: do_copy(l); break;
	case OP_DIOREAD: do_dioread(l); break;
	case OP_DIOWRITE: do_diowrite(l); break;
	case OP_FSYNC: do_fsync(l); break;
	case OP_REOPEN: do_reopen(l); break;
	}
	curop = l->op;
	l->size_after = sh->size;
	uint64_t start = l->op.kind == OP_COPY ? l->op.dst : l->op.off;
	if ((l->op.kind == OP_WRITE || l->op.kind == OP_MAPWRITE || l->op.kind == OP_DIOWRITE) && start > l->size_before)
		l->flags |= LF_HOLE;
	if (l->size_after > l->size_before) l->flags |= LF_EXTEND;
	if (l->size_after < l->size_before) l->flags |= LF_SHRINK;
	if (!(l->flags & LF_SKIPPED)) sh->counts[l->op.kind]++;
	if (verbose) {
		char line[400];
		format_op(line, sizeof line, l);
		printf("%s\n", line);
		fflush(stdout);
	}
	/* The size the file system reports must be the model's after every operation. */
	struct stat st;
	if (fstat(fd, &st) < 0) die_errno("fstat");
	if ((uint64_t)st.st_size != sh->size) fail_size("fstat", (uint64_t)st.st_size);
}

/* The whole file, from a fresh descriptor, against the model (start with -i, and the end). */
static void check_whole_file(const char *when)
{
	int f = open(fname, O_RDONLY);
	if (f < 0) die_errno("open(%s) for the %s check", fname, when);
	struct stat st;
	if (fstat(f, &st) < 0) die_errno("fstat");
	if ((uint64_t)st.st_size != sh->size) {
		char what[80];
		snprintf(what, sizeof what, "fstat in the %s check", when);
		fail_size(what, (uint64_t)st.st_size);
	}
	/* where() names the check; one byte more than the size: EOF must be there */
	check_range(f, buf, 0, sh->size + 1, "pread (whole file)");
	close(f);
}

/* ------------------------------------------------------------------ a worker */

static void work(void)
{
	rng_state = mix64(seed + (uint64_t)worker);
	lock_ops();
	open_files(0);
	unlock_ops();
	for (;;) {
		lock_ops();
		if (sh->failed || sh->opnum >= nops) { unlock_ops(); break; }
		struct op op;
		if (replay_path) {
			if (sh->replay_next >= nreplay) { unlock_ops(); break; }
			const struct recorded *r = &replay[sh->replay_next];
			if (nprocs > 1 && r->worker % nprocs != worker) {
				/* another worker's turn: let it take the lock */
				unlock_ops();
				usleep(50);
				continue;
			}
			sh->replay_next++;
			op = r->op;
		} else {
			gen_op(&op);
		}
		run_op(++sh->opnum, &op);
		unlock_ops();
	}
	close_files();
}

/* ------------------------------------------------------------------ main */

static uint64_t parse_size(const char *s, const char *opt)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s) usage_error("%s: not a number: %s", opt, s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (*end) usage_error("%s: not a number: %s", opt, s);
	return v;
}

static void parse_weights(const char *spec)
{
	char *copy = strdup(spec), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq) usage_error("-o: expected name=weight, got %s", tok);
		*eq = 0;
		int k;
		for (k = 0; k < OP_COUNT && strcmp(opnames[k], tok); k++)
			;
		if (k == OP_COUNT || k == OP_REOPEN) usage_error("-o: unknown operation %s (reopen: use -c)", tok);
		weights[k] = (unsigned)parse_size(eq + 1, "-o");
	}
	free(copy);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: cfsx [options] file\n"
		"  -N ops       operations (default 10000; with -P the total over all workers)\n"
		"  -S seed      PRNG seed (default 1)\n"
		"  -l maxlen    largest file size (default 1M; k/m/g suffixes)\n"
		"  -m maxoplen  largest single operation (default 64k)\n"
		"  -c n         close and reopen with chance 1 in n per operation (default 50; 0 never)\n"
		"  -f           fsync after every operation that changes the file\n"
		"  -M -D -C     no mmap / no O_DIRECT / no copy_file_range operations\n"
		"  -o w         weights, e.g. read=4,write=4,mapread=2,mapwrite=2,truncate=2,copy=2,\n"
		"               dioread=1,diowrite=1,fsync=1 (0 disables)\n"
		"  -P n         n worker processes on the same file, one operation at a time\n"
		"  -i model     start from the contents in file model instead of an empty file\n"
		"  -n           with -i: do not read the whole file to check it at the start\n"
		"  -w model     write the final expected contents to file model\n"
		"  -O record    record every operation (as it starts) to file record\n"
		"  -R record    replay the operations in file record instead of random ones\n"
		"               (with -P: each by the worker that ran it, in the recorded order)\n"
		"  -v           print every operation\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int opt, no_mmap = 0, no_dio = 0, no_copy = 0, oplen_given = 0;
	const char *wspec = NULL;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "N:S:l:m:c:fMDCo:P:i:nw:O:R:vh")) != -1) {
		switch (opt) {
		case 'N': nops = parse_size(optarg, "-N"); nops_given = 1; break;
		case 'S': seed = parse_size(optarg, "-S"); break;
		case 'l': maxlen = parse_size(optarg, "-l"); break;
		case 'm': maxoplen = parse_size(optarg, "-m"); oplen_given = 1; break;
		case 'c': reopen_chance = (unsigned)parse_size(optarg, "-c"); break;
		case 'f': fsync_after_write = 1; break;
		case 'M': no_mmap = 1; break;
		case 'D': no_dio = 1; break;
		case 'C': no_copy = 1; break;
		case 'o': wspec = optarg; break;
		case 'P': nprocs = (int)parse_size(optarg, "-P"); break;
		case 'i': model_in = optarg; break;
		case 'n': no_initial_check = 1; break;
		case 'w': model_out = optarg; break;
		case 'O': record_path = optarg; break;
		case 'R': replay_path = optarg; break;
		case 'v': verbose = 1; break;
		default: usage();
		}
	}
	if (optind != argc - 1) usage();
	fname = argv[optind];
	if (wspec) parse_weights(wspec);
	if (no_mmap) weights[OP_MAPREAD] = weights[OP_MAPWRITE] = 0;
	if (no_dio) weights[OP_DIOREAD] = weights[OP_DIOWRITE] = 0;
	if (no_copy) weights[OP_COPY] = 0;
	if (maxlen < 2 * DIO_ALIGN || maxlen % DIO_ALIGN) usage_error("-l: give a multiple of %u, at least %u", DIO_ALIGN, 2 * DIO_ALIGN);
	if (!oplen_given && maxoplen > maxlen / 2) maxoplen = maxlen / 2;
	if (maxoplen < 1 || maxoplen > maxlen / 2) usage_error("-m: between 1 and half of -l");
	if (nprocs < 1 || nprocs > 64) usage_error("-P: 1 to 64");
	pagesize = sysconf(_SC_PAGESIZE);

	/* The shared state: anonymous and MAP_SHARED, so forked workers see one model. */
	size_t shlen = sizeof(struct shared) + maxlen;
	sh = mmap(NULL, shlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) die_errno("mmap(shared state, %zu bytes)", shlen);
	sh_ready = 1;
	if (posix_memalign((void **)&dbuf, DIO_ALIGN, maxlen + DIO_ALIGN)) usage_error("out of memory");
	buf = malloc(maxlen + DIO_ALIGN);
	if (!buf) usage_error("out of memory");

	if (model_in) {
		FILE *m = fopen(model_in, "rb");
		if (!m) die_errno("open(%s) (-i)", model_in);
		size_t n = fread(sh->model, 1, maxlen, m);
		if (ferror(m)) die_errno("read(%s) (-i)", model_in);
		if (fgetc(m) != EOF) usage_error("-i %s: larger than -l %" PRIu64, model_in, maxlen);
		fclose(m);
		sh->size = n;
	}
	if (replay_path) {
		load_replay(replay_path);
		if (!nops_given) nops = UINT64_MAX;
	}
	if (record_path) {
		record = fopen(record_path, "w");
		if (!record) die_errno("open(%s) (-O)", record_path);
		fprintf(record, "# cfsx -S %" PRIu64 " -l %" PRIu64 " %s\n", seed, maxlen, fname);
		fflush(record);
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_fault;
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);

	printf("cfsx: %s seed %" PRIu64 " ops %" PRIu64 " maxlen 0x%" PRIx64 " maxoplen 0x%" PRIx64 " reopen 1/%u%s%s%s%s workers %d\n",
	       fname, seed, replay_path && !nops_given ? 0 : nops, maxlen, maxoplen, reopen_chance,
	       fsync_after_write ? " fsync-after-write" : "", model_in ? " from-model" : "",
	       replay_path ? " replay" : "", (no_mmap || no_dio || no_copy) ? " (some ops off)" : "", nprocs);

	/* Start: an empty file, or the file as it is, which must match the -i model. */
	{
		int f = open(fname, O_RDWR | O_CREAT | (model_in ? 0 : O_TRUNC), 0644);
		if (f < 0) die_errno("open(%s)", fname);
		close(f);
		if (model_in && !no_initial_check) check_whole_file("initial");
		else if (model_in) {
			struct stat st;
			if (stat(fname, &st) < 0) die_errno("stat(%s)", fname);
			if ((uint64_t)st.st_size != sh->size) fail_size("stat at the start", (uint64_t)st.st_size);
		}
	}

	char lockpath[] = "/tmp/cfsx-lock-XXXXXX";
	if (nprocs == 1) {
		work();
	} else {
		/* The lock file is private and outside the file system under test. */
		int lf = mkstemp(lockpath);
		if (lf < 0) die_errno("mkstemp(%s)", lockpath);
		close(lf);
		fflush(stdout);
		pid_t pids[64];
		for (int i = 0; i < nprocs; i++) {
			pids[i] = fork();
			if (pids[i] < 0) die_errno("fork");
			if (pids[i] == 0) {
				worker = i;
				/* each worker its own open file description: flock excludes between them */
				lockfd = open(lockpath, O_RDWR);
				if (lockfd < 0) die_errno("open(%s)", lockpath);
				work();
				exit(0);
			}
		}
		int code = 0;
		for (int i = 0; i < nprocs; i++) {
			int status;
			while (waitpid(pids[i], &status, 0) < 0)
				if (errno != EINTR) die_errno("waitpid");
			int c = WIFEXITED(status) ? WEXITSTATUS(status) : 3;
			if (WIFSIGNALED(status)) {
				sh->failed = 1;
				printf("cfsx: worker %d died by signal %d (%s)\n", i, WTERMSIG(status), strsignal(WTERMSIG(status)));
			}
			if (c && !code) code = c;
		}
		unlink(lockpath);
		if (code) return code;
	}
	if (sh->failed) return 1;

	cur = sh->opnum;
	final_phase = 1;
	check_whole_file("final");
	if (model_out) {
		int m = open(model_out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (m < 0) die_errno("open(%s) (-w)", model_out);
		write_full(m, sh->model, 0, sh->size, "write (-w)");
		if (fsync(m) < 0 || close(m) < 0) die_errno("fsync/close(%s) (-w)", model_out);
	}
	printf("cfsx: by kind:");
	for (int k = 0; k < OP_COUNT; k++)
		printf(" %s %" PRIu64, opnames[k], sh->counts[k]);
	printf("; copy fallbacks %" PRIu64 "; final size 0x%" PRIx64 "\n", sh->copy_fallbacks, sh->size);
	printf("cfsx: %" PRIu64 " ops ok\n", sh->opnum);
	return 0;
}
