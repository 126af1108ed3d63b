/*
 * test_region.c - the one mapping a server lives in (region.c): guard pages
 * after every arena, prefault, mlock, and the failure of each mapping step
 * (fault injection through nea__fault_next_server) leaving nothing mapped.
 *
 * Faults are provoked in fork()ed children; the parent only looks at how the
 * child died.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

/* --- guard pages ------------------------------------------------------------ */

typedef enum { WRITE_PAST_FIRST, WRITE_PAST_LAST } overrun_kind;

typedef struct child_result {
    int status;
    char report[4096]; /* the child's stderr (a sanitizer's report) */
} child_result;

/* In a child: builds a server, takes the whole of an arena (so the checkers
 * consider all of it handed out), writes its last byte, then one byte past its
 * end. Exit 0 means both writes went through. */
static void overrun_child(int guard_pages, overrun_kind kind, child_result *out)
{
    char path[] = "/tmp/nea-test-arena-XXXXXX";
    int fd = mkstemp(path);
    pid_t pid;
    ssize_t n;

    assert_true(fd >= 0);
    unlink(path);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uv_loop_t loop;
        nea_config cfg;
        nea_server *srv;
        nea__arena *a = NULL;
        volatile char *p;

        dup2(fd, 2);
        /* cmocka turns SIGSEGV into a test failure and carries on with the next
         * test, in this child: the fault must kill the child instead. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        if (uv_loop_init(&loop) != 0) {
            _exit(90);
        }
        unit_config(&cfg, NULL);
        cfg.log = NULL;
        cfg.guard_pages = guard_pages;
        if (nea_server_new(&loop, &cfg, &srv) != 0) {
            _exit(91);
        }
        for (unsigned i = 0; i < (kind == WRITE_PAST_LAST ? srv->pools[0].count : 1); i++) {
            a = nea__pool_acquire(&srv->pools[0]);
        }
        if (a == NULL || a->size % (size_t)sysconf(_SC_PAGESIZE) != 0) {
            _exit(92);
        }
        p = nea__arena_alloc(a, a->size, 1);
        if (p == NULL) {
            _exit(93);
        }
        p[a->size - 1] = 1; /* the last byte is fine */
        p[a->size] = 1;     /* one past the end */
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &out->status, 0), pid);
    n = pread(fd, out->report, sizeof(out->report) - 1, 0);
    out->report[n > 0 ? n : 0] = '\0';
    close(fd);
}

static void expect_overrun_faults(const child_result *r)
{
    if (WIFSIGNALED(r->status)) {
        assert_int_equal(WTERMSIG(r->status), SIGSEGV);
    } else {
        /* ASan keeps its own SIGSEGV handler: it reports the fault and exits
         * non-zero. It must be the guard page's fault, not another report. */
        if (!under_asan() || WEXITSTATUS(r->status) == 0 || strstr(r->report, "SEGV") == NULL) {
            print_error("child exit %d: %s\n", WEXITSTATUS(r->status), r->report);
        }
        assert_true(WIFEXITED(r->status));
        assert_true(under_asan());
        assert_true(WEXITSTATUS(r->status) != 0 && WEXITSTATUS(r->status) < 90);
        assert_non_null(strstr(r->report, "SEGV"));
    }
}

static void test_guard_page_faults(void **state)
{
    child_result r;
    (void)state;
    if (under_valgrind()) {
        skip();
    }
    overrun_child(1, WRITE_PAST_FIRST, &r);
    expect_overrun_faults(&r);
    overrun_child(1, WRITE_PAST_LAST, &r);
    expect_overrun_faults(&r);
}

static void test_no_guard_page_no_fault(void **state)
{
    child_result r;
    (void)state;
    if (under_valgrind() || under_asan()) {
        skip(); /* both report the write into poisoned bytes themselves */
    }
    /* Past arena 0's end is arena 1's memory: wrong, but not a fault. */
    overrun_child(0, WRITE_PAST_FIRST, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        print_error("child status 0x%x: %s\n", r.status, r.report);
    }
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 0);
}

/* --- prefault and mlock -------------------------------------------------------- */

static size_t status_kib(const char *field)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    size_t v = 0, flen = strlen(field);
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            v = (size_t)strtoull(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(fp);
    return v;
}

static void big_config(nea_config *cfg, fixture *f)
{
    unit_config(cfg, f);
    cfg->memory_limit = 48 * MIB;
    cfg->arena_size = 256 * KIB;
    cfg->arena_count = 0; /* as many as fit: ~48 MiB of arenas */
}

static void rss_growth(int prefault, size_t *growth, size_t *total)
{
    fixture f;
    nea_server *srv;
    size_t before, after;

    memset(&f, 0, sizeof(f));
    assert_int_equal(uv_loop_init(&f.loop), 0);
    big_config(&f.cfg, &f);
    f.cfg.prefault = prefault;
    before = status_kib("VmRSS") * KIB;
    assert_int_equal(nea_server_new(&f.loop, &f.cfg, &srv), 0);
    after = status_kib("VmRSS") * KIB;
    *growth = after > before ? after - before : 0;
    *total = srv->plan.total;
    nea_server_close(srv, unit_on_closed, &f);
    assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f.closed, 1);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

static void test_prefault_resident(void **state)
{
    size_t growth, total;
    (void)state;
    rss_growth(1, &growth, &total);
    if (growth < total / 10 * 9) {
        print_error("prefault: RSS grew %zu of %zu reserved\n", growth, total);
    }
    assert_true(growth >= total / 10 * 9);
}

static void test_no_prefault_lazy(void **state)
{
    size_t growth, total;
    (void)state;
    /* Control for the test above: without prefault the arenas stay unbacked
     * (ASan's shadow for the poisoned arenas is an eighth of them). */
    rss_growth(0, &growth, &total);
    if (growth >= total / 2) {
        print_error("no prefault: RSS grew %zu of %zu reserved\n", growth, total);
    }
    assert_true(growth < total / 2);
}

/* In a child: lowers RLIMIT_MEMLOCK (and drops root, which ignores it), then
 * creates a server with lock_memory. Exit code: 0 = NEA_EMLOCK and logged,
 * 1 = created and locked, >= 10 something else. */
static int mlock_child(rlim_t limit)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {limit, limit};
        uv_loop_t loop;
        fixture f;
        nea_server *srv = NULL;
        int rc;

        memset(&f, 0, sizeof(f));
        if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
            _exit(10);
        }
        if (geteuid() == 0 && setuid(65534) != 0) {
            _exit(11);
        }
        if (uv_loop_init(&loop) != 0) {
            _exit(12);
        }
        unit_config(&f.cfg, &f);
        f.cfg.lock_memory = 1;
        rc = nea_server_new(&loop, &f.cfg, &srv);
        if (rc == NEA_EMLOCK) {
            _exit(strstr(f.log.all, "lock") != NULL ? 0 : 13);
        }
        if (rc != 0) {
            _exit(14);
        }
        /* Everything is locked but the PROT_NONE guard pages, which are
         * never resident. */
        if (!srv->region.locked ||
            status_kib("VmLck") * KIB <
                srv->plan.total -
                    (f.cfg.guard_pages ? srv->plan.arena_total * srv->plan.page_size : 0)) {
            _exit(15);
        }
        _exit(1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_mlock_refused(void **state)
{
    nea_config cfg;
    nea_plan p;
    struct rlimit rl;
    (void)state;
    if (under_valgrind() || under_asan()) {
        skip(); /* ASan's mlock interceptor does nothing and reports success */
    }
    unit_config(&cfg, NULL);
    assert_int_equal(nea_config_plan(&cfg, &p, NULL, 0), 0);
    assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &rl), 0);

    /* Lowering is always allowed; raising above the hard limit is not. */
    assert_int_equal(mlock_child(rl.rlim_max < 64 * KIB ? rl.rlim_max : 64 * KIB), 0);
    /* Control: with room for the plan, the same config locks. */
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= p.total + MIB) {
        rlim_t enough = rl.rlim_max == RLIM_INFINITY ? (rlim_t)(p.total + MIB) : rl.rlim_max;
        assert_int_equal(mlock_child(enough), 1);
    }
}

/* --- a failing mapping step leaves nothing behind ------------------------------ */

typedef struct map_fault {
    const char *what;
    nea__fault_point pt;
    unsigned long nth;
    int lock_memory;
    int code;
    const char *logged;
} map_fault;

static void test_mapping_step_failures(void **state)
{
    static const map_fault cases[] = {
        {"mmap", NEA__FAULT_MAP, 1, 0, UV_ENOMEM, "cannot reserve"},
        {"first guard page", NEA__FAULT_GUARD, 1, 0, UV_ENOMEM, "cannot protect guard page 0"},
        {"third guard page", NEA__FAULT_GUARD, 3, 0, UV_ENOMEM, "cannot protect guard page 2"},
        {"mlock", NEA__FAULT_LOCK, 1, 1, NEA_EMLOCK, "cannot lock"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const map_fault *c = &cases[i];
        fixture f;
        nea_server *srv = (nea_server *)&f; /* sentinel: must not be overwritten */
        nea_plan plan;
        size_t before, after;

        memset(&f, 0, sizeof(f));
        assert_int_equal(uv_loop_init(&f.loop), 0);
        unit_config(&f.cfg, &f);
        f.cfg.lock_memory = c->lock_memory;
        assert_int_equal(nea_config_plan(&f.cfg, &plan, NULL, 0), 0);
        nea__fault_arm(nea__fault_next_server(), c->pt, c->nth, false);
        before = status_kib("VmSize") * KIB;
        assert_int_equal(nea_server_new(&f.loop, &f.cfg, &srv), c->code);
        after = status_kib("VmSize") * KIB;
        if (!contains(f.log.all, c->logged) || after >= before + plan.total / 2) {
            print_error("%s: VmSize %zu -> %zu (reservation %zu)\n", c->what, before, after,
                        plan.total);
        }
        assert_ptr_equal(srv, (nea_server *)&f);
        assert_true(contains(f.log.all, c->logged));
        assert_int_equal(f.log.level, NEA_LOG_ERROR);
        /* Nothing stayed mapped: the reservation is gone again. */
        assert_true(after < before + plan.total / 2);
        assert_int_equal(nea__fault_failed(nea__fault_next_server(), c->pt), 1);

        /* The failure was one-off: the next server is created (and closes). */
        nea__fault_arm(nea__fault_next_server(), c->pt, 0, false);
        f.cfg.lock_memory = 0;
        assert_int_equal(nea_server_new(&f.loop, &f.cfg, &srv), 0);
        assert_int_equal(nea_server_close(srv, unit_on_closed, &f), 0);
        assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(f.closed, 1);
        assert_int_equal(uv_loop_close(&f.loop), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guard_page_faults), cmocka_unit_test(test_no_guard_page_no_fault),
        cmocka_unit_test(test_prefault_resident), cmocka_unit_test(test_no_prefault_lazy),
        cmocka_unit_test(test_mlock_refused),     cmocka_unit_test(test_mapping_step_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
