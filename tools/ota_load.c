/* ota_load: the load generator (issue 7).  N concurrent simulated phones,
 * each with its own in-memory card personalized directly (distinct UIDs),
 * run operations against any server that speaks docs/PROTOCOL.md, over plain
 * ws:// from one epoll loop.  It prints completed operations per second,
 * outcomes by code, and latency percentiles for whole sessions and for the
 * server's time per exchange (from our message to its next one; the
 * phone's --delay-ms is never counted), split into exchanges that wait for
 * a ledger step and those that need only card crypto.  Per operation kind
 * it prints the round trips to the phone (messages that carried APDUs:
 * one per `command` in protocol v1, one per `commands` batch in v2) and
 * the tap time (operation sent to result: how long the card stays on the
 * phone), which --delay-ms (one simulated network round trip) dominates.
 * Rates and
 * latencies come from the measured window (after --warmup, before the
 * drain); outcomes count the whole run.  A benchmark tool: it reports and
 * never judges times; it must never reuse a code or share a card between
 * two concurrent sessions. */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "card_profile.h"
#include "hex.h"
#include "load_hist.h"
#include "load_sess.h"
#include "ota_err.h"
#include "sim_card.h"
#include "version.h"
#include "num.h"

#define LOAD_SWEEP_US 100000ULL
#define LOAD_RETRY_US 100000ULL
#define LOAD_STOP_GRACE_US 5000000ULL
#define LOAD_MAX_SESSIONS 1000000
#define LOAD_EXIT_USAGE 2

#define LOAD_USAGE                                                                                 \
    "usage: ota-load --url ws://HOST:PORT/v1/session --master-keys K0,K1,K2,K3\n"                  \
    "                [--concurrency N] [--duration S | --count N] [--ramp-up S]\n"                 \
    "                [--warmup S] [--delay-ms MS] [--codes FILE] [--mix check=W,topup=W]\n"        \
    "                [--system-id ASCII] [--balance N] [--timeout-ms MS] [--seed N] [--json]\n"    \
    "                [--protocol v1|v2]\n"                                                         \
    "       ota-load --help | --version\n"

#define LOAD_HELP                                                                                  \
    "  --url URL          the gateway (plain ws://; put TLS in front with a proxy)\n"              \
    "  --master-keys ...  the four application master keys (hex), as the server has them\n"        \
    "  --concurrency N    simulated phones at once, each with its own card (default 1)\n"          \
    "  --duration S       start operations for S seconds (default 10), then drain\n"               \
    "  --count N          or: run exactly N operations in all\n"                                   \
    "  --ramp-up S        spread the phones' first starts over S seconds (default 0)\n"            \
    "  --warmup S         measure rates and latencies from S seconds on (default: the\n"           \
    "                     ramp-up) until the duration ends (the drain is not measured)\n"          \
    "  --delay-ms MS      the phone's time before it answers each message with APDUs: one\n"       \
    "                     mobile network round trip (default 0)\n"                                 \
    "  --protocol v1|v2   v2 (default) announces batches of up to 16 APDUs; v1 does not\n"         \
    "  --codes FILE       top-up codes, one per line, each used once (needed for topup)\n"         \
    "  --mix W            operation weights, e.g. check=1,topup=3 (default: topup if codes\n"      \
    "                     are given, else check); a topup without codes left runs check\n"         \
    "  --system-id ASCII  AN10922 system identifier (default OTA1)\n"                              \
    "  --balance N        the cards' starting balance (default 0)\n"                               \
    "  --timeout-ms MS    an operation without a result by then counts as client:timeout\n"        \
    "                     (default 90000)\n"                                                       \
    "  --seed N           operation mix and UIDs reproducible (default: random)\n"                 \
    "  --json             print the report as one JSON object\n"                                   \
    "  --help, --version  this text; the program's version\n"                                      \
    "Exit status: 0 every operation ok, 1 some did not, 2 usage.\n"

struct load_args {
    const char *url;
    uint8_t keys[PROF_NUM_KEYS][16];
    int have_keys;
    long concurrency, duration_s, count, ramp_s, warmup_s, delay_ms, timeout_ms, balance;
    const char *codes_file;
    const char *mix;
    const char *system_id;
    unsigned long long seed;
    int have_seed, json;
    int batch; /* 0: --protocol v1 */
};

/* Timers: a binary min-heap of (when, slot, generation). */
struct load_timer {
    uint64_t at;
    struct load_sess *s;
    unsigned gen;
};

static struct {
    struct load_timer *v;
    size_t n, cap;
} load_heap;

static volatile sig_atomic_t load_interrupted;

static void load_on_signal(int sig)
{
    (void)sig;
    load_interrupted = 1;
}

static void load_heap_swap(size_t a, size_t b)
{
    struct load_timer t = load_heap.v[a];
    load_heap.v[a] = load_heap.v[b];
    load_heap.v[b] = t;
}

void load_timer_set(struct load_run *run, struct load_sess *s, uint64_t at_us)
{
    size_t i;
    (void)run;
    s->timer_at = at_us;
    s->timer_gen++;
    if (load_heap.n == load_heap.cap) {
        size_t cap = load_heap.cap ? load_heap.cap * 2 : 1024;
        struct load_timer *v = realloc(load_heap.v, cap * sizeof *v);
        if (v == NULL) {
            /* Without a timer the slot would hang: fire it on the next sweep. */
            s->timer_at = 0;
            s->deadline = 1;
            return;
        }
        load_heap.v = v;
        load_heap.cap = cap;
    }
    i = load_heap.n++;
    load_heap.v[i] = (struct load_timer){at_us, s, s->timer_gen};
    while (i > 0 && load_heap.v[(i - 1) / 2].at > load_heap.v[i].at) {
        load_heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static struct load_timer load_heap_pop(void)
{
    struct load_timer top = load_heap.v[0];
    size_t i = 0;
    load_heap.v[0] = load_heap.v[--load_heap.n];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < load_heap.n && load_heap.v[l].at < load_heap.v[m].at)
            m = l;
        if (r < load_heap.n && load_heap.v[r].at < load_heap.v[m].at)
            m = r;
        if (m == i)
            break;
        load_heap_swap(i, m);
        i = m;
    }
    return top;
}

static int load_usage(const char *why)
{
    if (why != NULL)
        fprintf(stderr, "ota-load: %s\n", why);
    fputs(LOAD_USAGE, stderr);
    return LOAD_EXIT_USAGE;
}

static int load_num(const char *s, long min, long max, long *out)
{
    long long v;
    if (num_parse_ll(s, min, max, &v) != 0)
        return -1;
    *out = (long)v;
    return 0;
}

static int load_parse_keys(char *s, uint8_t keys[PROF_NUM_KEYS][16])
{
    char *p = s;
    for (int n = 0; n < PROF_NUM_KEYS; n++) {
        char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if ((n < PROF_NUM_KEYS - 1) != (end != NULL) || len != 32 ||
            hex_decode(p, 32, keys[n], 16) != 16)
            return -1;
        p = end != NULL ? end + 1 : p + len;
    }
    /* The keys are secret: do not leave them in /proc/PID/cmdline. */
    sodium_memzero(s, strlen(s));
    return 0;
}

static int load_parse_mix(const char *s, unsigned mix[LOAD_OP_COUNT])
{
    char buf[128];
    char *save = NULL, *tok;
    if (strlen(s) >= sizeof buf)
        return -1;
    snprintf(buf, sizeof buf, "%s", s);
    mix[LOAD_OP_CHECK] = mix[LOAD_OP_TOPUP] = 0;
    for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        long w;
        if (eq == NULL || load_num(eq + 1, 0, 1000000, &w) != 0)
            return -1;
        *eq = '\0';
        if (strcmp(tok, "check") == 0)
            mix[LOAD_OP_CHECK] = (unsigned)w;
        else if (strcmp(tok, "topup") == 0)
            mix[LOAD_OP_TOPUP] = (unsigned)w;
        else
            return -1;
    }
    return mix[LOAD_OP_CHECK] + mix[LOAD_OP_TOPUP] > 0 ? 0 : -1;
}

static int load_parse_args(int argc, char **argv, struct load_args *a, int *help)
{
    memset(a, 0, sizeof *a);
    a->concurrency = 1;
    a->timeout_ms = 90000;
    a->batch = WSM_BATCH_MAX;
    a->warmup_s = -1;
    a->system_id = "OTA1";
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
            *help = 1;
            return 0;
        }
        if (strcmp(o, "--version") == 0) {
            *help = 2;
            return 0;
        }
        if (strcmp(o, "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "ota-load: %s is not an option or needs a value\n", o);
            return load_usage(NULL);
        }
        i++;
        if (strcmp(o, "--url") == 0) {
            a->url = v;
        } else if (strcmp(o, "--master-keys") == 0) {
            if (load_parse_keys(v, a->keys) != 0)
                return load_usage("--master-keys wants four AES keys of 32 hex digits, "
                                  "comma-separated");
            a->have_keys = 1;
        } else if (strcmp(o, "--concurrency") == 0) {
            if (load_num(v, 1, LOAD_MAX_SESSIONS, &a->concurrency) != 0)
                return load_usage("--concurrency wants 1..1000000");
        } else if (strcmp(o, "--duration") == 0) {
            if (load_num(v, 1, 86400, &a->duration_s) != 0)
                return load_usage("--duration wants 1..86400 seconds");
        } else if (strcmp(o, "--count") == 0) {
            if (load_num(v, 1, 1000000000L, &a->count) != 0)
                return load_usage("--count wants a positive number");
        } else if (strcmp(o, "--ramp-up") == 0) {
            if (load_num(v, 0, 3600, &a->ramp_s) != 0)
                return load_usage("--ramp-up wants 0..3600 seconds");
        } else if (strcmp(o, "--warmup") == 0) {
            if (load_num(v, 0, 3600, &a->warmup_s) != 0)
                return load_usage("--warmup wants 0..3600 seconds");
        } else if (strcmp(o, "--delay-ms") == 0) {
            if (load_num(v, 0, 60000, &a->delay_ms) != 0)
                return load_usage("--delay-ms wants 0..60000");
        } else if (strcmp(o, "--protocol") == 0) {
            if (strcmp(v, "v1") == 0)
                a->batch = 0;
            else if (strcmp(v, "v2") == 0)
                a->batch = WSM_BATCH_MAX;
            else
                return load_usage("--protocol wants v1 or v2");
        } else if (strcmp(o, "--timeout-ms") == 0) {
            if (load_num(v, 1, 3600000, &a->timeout_ms) != 0)
                return load_usage("--timeout-ms wants 1..3600000");
        } else if (strcmp(o, "--balance") == 0) {
            if (load_num(v, PROF_VALUE_LOWER, PROF_VALUE_UPPER, &a->balance) != 0)
                return load_usage("--balance is outside the value file's limits");
        } else if (strcmp(o, "--codes") == 0) {
            a->codes_file = v;
        } else if (strcmp(o, "--mix") == 0) {
            a->mix = v;
        } else if (strcmp(o, "--system-id") == 0) {
            a->system_id = v;
        } else if (strcmp(o, "--seed") == 0) {
            char *end = NULL;
            a->seed = strtoull(v, &end, 10);
            if (*v == '\0' || *end != '\0')
                return load_usage("--seed wants a number");
            a->have_seed = 1;
        } else {
            fprintf(stderr, "ota-load: unknown option %s\n", o);
            return load_usage(NULL);
        }
    }
    if (a->url == NULL || !a->have_keys)
        return load_usage("--url and --master-keys are required");
    if (a->duration_s > 0 && a->count > 0)
        return load_usage("give --duration or --count, not both");
    if (a->duration_s == 0 && a->count == 0)
        a->duration_s = 10;
    if (a->warmup_s < 0)
        a->warmup_s = a->ramp_s;
    if (a->duration_s > 0 && a->warmup_s >= a->duration_s)
        return load_usage("--warmup (or --ramp-up) must end before --duration");
    return 0;
}

/* A code goes into JSON as it is: allow only what codes are made of. */
static int load_code_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LOAD_CODE_MAX)
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
              *s == '-'))
            return 0;
    return 1;
}

static int load_read_codes(const char *path, struct load_run *run)
{
    FILE *f = fopen(path, "r");
    char line[256];
    size_t cap = 0;
    unsigned long lineno = 0;
    if (f == NULL) {
        fprintf(stderr, "ota-load: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        size_t n = strcspn(line, "\r\n");
        lineno++;
        line[n] = '\0';
        if (n == 0)
            continue;
        if (!load_code_ok(line)) {
            fprintf(stderr, "ota-load: %s:%lu: not a code\n", path, lineno);
            fclose(f);
            return -1;
        }
        if (run->ncodes == cap) {
            size_t nc = cap ? cap * 2 : 256;
            char **v = realloc(run->codes, nc * sizeof *v);
            if (v == NULL) {
                fclose(f);
                return -1;
            }
            run->codes = v;
            cap = nc;
        }
        run->codes[run->ncodes] = strdup(line);
        if (run->codes[run->ncodes] == NULL) {
            fclose(f);
            return -1;
        }
        run->ncodes++;
    }
    fclose(f);
    return 0;
}

static int load_resolve(struct load_run *run)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int r = getaddrinfo(run->url.host, run->url.port, &hints, &res);
    if (r != 0 || res == NULL) {
        fprintf(stderr, "ota-load: cannot resolve %s: %s\n", run->url.host, gai_strerror(r));
        return -1;
    }
    memcpy(&run->addr, res->ai_addr, res->ai_addrlen);
    run->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* One descriptor per phone plus a few: raise the soft limit if we can. */
static void load_raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= (rlim_t)need)
        return;
    rl.rlim_cur = rl.rlim_max < (rlim_t)need ? rl.rlim_max : (rlim_t)need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < (rlim_t)need)
        fprintf(stderr, "ota-load: warning: only %llu file descriptors for %ld sessions\n",
                (unsigned long long)rl.rlim_cur, need);
}

static int load_make_cards(const struct load_args *a, struct load_sess *slots, long n,
                           uint64_t *rng)
{
    uint8_t run_id[3];
    /* UIDs: 04 || 3 bytes per run || 3-byte slot number.  Fresh per run
     * so that a server's ledger from an earlier run never meets a card it
     * thinks it has seen (it would freeze it). */
    for (int i = 0; i < 3; i++) {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        run_id[i] = (uint8_t)(*rng >> 24);
    }
    for (long i = 0; i < n; i++) {
        uint8_t uid[7] = {0x04,      run_id[0],          run_id[1],
                          run_id[2], (uint8_t)(i >> 16), (uint8_t)(i >> 8),
                          (uint8_t)i};
        struct load_sess *s = &slots[i];
        s->idx = (unsigned)i;
        s->fd = -1;
        s->card = sim_card_new(uid, sizeof uid, SIM_PICC_DES0);
        if (s->card == NULL ||
            sim_card_personalize(s->card, a->keys, a->system_id, (int32_t)a->balance) != 0) {
            fprintf(stderr, "ota-load: cannot personalize simulated card %ld\n", i);
            return -1;
        }
        hex_encode(uid, sizeof uid, s->uid_hex);
    }
    return 0;
}

static void load_print_hist(const char *name, const struct load_hist *h, double div,
                            const char *unit)
{
    printf("%-22s n=%-8llu p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f %s\n",
           name, (unsigned long long)h->count, (double)load_hist_quantile(h, 0.5) / div,
           (double)load_hist_quantile(h, 0.9) / div, (double)load_hist_quantile(h, 0.99) / div,
           (double)load_hist_quantile(h, 0.999) / div, (double)h->max_us / div,
           (double)load_hist_mean(h) / div, unit);
}

static json_t *load_hist_json(const struct load_hist *h)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "count", (json_int_t)h->count, "p50",
                     (json_int_t)load_hist_quantile(h, 0.5), "p90",
                     (json_int_t)load_hist_quantile(h, 0.9), "p99",
                     (json_int_t)load_hist_quantile(h, 0.99), "p99_9",
                     (json_int_t)load_hist_quantile(h, 0.999), "max", (json_int_t)h->max_us, "mean",
                     (json_int_t)load_hist_mean(h));
}

static const char *const load_op_name[LOAD_OP_COUNT] = {"check", "topup"};

/* Round trips, APDUs and tap time per operation kind (ok, in the window). */
static json_t *load_by_op_json(const struct load_run *run)
{
    json_t *o = json_object();
    for (int i = 0; i < LOAD_OP_COUNT; i++) {
        uint64_t n = run->tap_us[i].count;
        if (n == 0)
            continue;
        json_object_set_new(o, load_op_name[i],
                            json_pack("{s:I, s:f, s:I, s:f, s:o}", "ok", (json_int_t)n,
                                      "round_trips", (double)run->round_trips[i] / (double)n,
                                      "round_trips_max", (json_int_t)run->round_trips_max[i],
                                      "apdus", (double)run->apdus[i] / (double)n, "tap_us",
                                      load_hist_json(&run->tap_us[i])));
    }
    return o;
}

static uint64_t load_count_of(const struct load_run *run, const char *name)
{
    for (int i = 0; i < run->noutcomes; i++)
        if (strcmp(run->outcome[i].name, name) == 0)
            return run->outcome[i].count;
    return 0;
}

static void load_report(const struct load_args *a, const struct load_run *run, double secs)
{
    double rate = secs > 0 ? (double)run->completed / secs : 0;
    uint64_t ok = load_count_of(run, "ok");
    double wsecs = (double)(run->window_to - run->window_from) / 1e6;
    double wtop = wsecs > 0 ? (double)run->window_ok_by_op[LOAD_OP_TOPUP] / wsecs : 0;
    double wops = wsecs > 0 ? (double)run->window_completed / wsecs : 0;
    if (a->json) {
        json_t *o = json_object(), *oc = json_object();
        char *t;
        for (int i = 0; i < run->noutcomes; i++)
            json_object_set_new(oc, run->outcome[i].name,
                                json_integer((json_int_t)run->outcome[i].count));
        json_object_set_new(o, "url", json_string(a->url));
        json_object_set_new(o, "concurrency", json_integer(a->concurrency));
        json_object_set_new(o, "delay_ms", json_integer(a->delay_ms));
        json_object_set_new(o, "elapsed_s", json_real(secs));
        json_object_set_new(o, "started", json_integer((json_int_t)run->started));
        json_object_set_new(o, "completed", json_integer((json_int_t)run->completed));
        json_object_set_new(o, "ok", json_integer((json_int_t)ok));
        json_object_set_new(o, "ok_topups", json_integer((json_int_t)run->ok_by_op[LOAD_OP_TOPUP]));
        json_object_set_new(o, "ok_checks", json_integer((json_int_t)run->ok_by_op[LOAD_OP_CHECK]));
        json_object_set_new(o, "ops_per_s", json_real(rate));
        json_object_set_new(o, "topups_per_s",
                            json_real(secs > 0 ? (double)run->ok_by_op[LOAD_OP_TOPUP] / secs : 0));
        json_object_set_new(o, "codes_exhausted", json_integer((json_int_t)run->codes_exhausted));
        json_object_set_new(o, "outcomes", oc);
        json_object_set_new(o, "session_us", load_hist_json(&run->session_us));
        json_object_set_new(o, "exchange_us", load_hist_json(&run->exchange_us));
        json_object_set_new(o, "exchange_ledger_us", load_hist_json(&run->exchange_ledger_us));
        json_object_set_new(o, "exchange_card_us", load_hist_json(&run->exchange_card_us));
        json_object_set_new(o, "protocol", json_string(a->batch > 0 ? "v2" : "v1"));
        json_object_set_new(o, "by_op", load_by_op_json(run));
        json_object_set_new(o, "window",
                            json_pack("{s:f, s:I, s:I, s:f, s:f}", "s", wsecs, "completed",
                                      (json_int_t)run->window_completed, "ok_topups",
                                      (json_int_t)run->window_ok_by_op[LOAD_OP_TOPUP], "ops_per_s",
                                      wops, "topups_per_s", wtop));
        t = json_dumps(o, JSON_COMPACT);
        if (t != NULL)
            printf("%s\n", t);
        free(t);
        json_decref(o);
        return;
    }
    printf("ota-load: %ld sessions, delay %ld ms, %.2f s\n", a->concurrency, a->delay_ms, secs);
    printf("operations: %llu completed, %.1f/s; ok %llu (top-ups %llu, %.1f/s; checks %llu)\n",
           (unsigned long long)run->completed, rate, (unsigned long long)ok,
           (unsigned long long)run->ok_by_op[LOAD_OP_TOPUP],
           secs > 0 ? (double)run->ok_by_op[LOAD_OP_TOPUP] / secs : 0,
           (unsigned long long)run->ok_by_op[LOAD_OP_CHECK]);
    printf("outcomes:");
    for (int i = 0; i < run->noutcomes; i++)
        printf(" %s=%llu", run->outcome[i].name, (unsigned long long)run->outcome[i].count);
    printf("\n");
    if (run->codes_exhausted > 0)
        printf("codes ran out: %llu top-ups ran as checks\n",
               (unsigned long long)run->codes_exhausted);
    printf("measured window: %.2f s, %llu completed (%.1f/s), %llu top-ups ok (%.1f/s)\n", wsecs,
           (unsigned long long)run->window_completed, wops,
           (unsigned long long)run->window_ok_by_op[LOAD_OP_TOPUP], wtop);
    load_print_hist("session (ms)", &run->session_us, 1000.0, "ms");
    load_print_hist("server per exchange", &run->exchange_us, 1.0, "us");
    load_print_hist("  with a ledger step", &run->exchange_ledger_us, 1.0, "us");
    load_print_hist("  card crypto only", &run->exchange_card_us, 1.0, "us");
    for (int i = 0; i < LOAD_OP_COUNT; i++) {
        char name[40];
        uint64_t n = run->tap_us[i].count;
        if (n == 0)
            continue;
        printf("%s (protocol %s, ok in window): %.2f round trips (max %u), %.1f APDUs\n",
               load_op_name[i], a->batch > 0 ? "v2" : "v1", (double)run->round_trips[i] / (double)n,
               run->round_trips_max[i], (double)run->apdus[i] / (double)n);
        snprintf(name, sizeof name, "  tap time (ms)");
        load_print_hist(name, &run->tap_us[i], 1000.0, "ms");
    }
}

/* Starts the slot's next operation if the run still wants one. */
static void load_next(struct load_run *run, const struct load_args *a, struct load_sess *s,
                      int stopping)
{
    if (s->state != LS_IDLE || s->timer_at != 0 || stopping)
        return;
    if (a->count > 0 && run->started >= (uint64_t)a->count)
        return;
    if (load_sess_start(run, s) != 0 && s->state == LS_IDLE)
        load_timer_set(run, s, load_now_us() + LOAD_RETRY_US); /* back off, do not spin */
}

static int load_loop(struct load_run *run, const struct load_args *a, struct load_sess *slots)
{
    struct epoll_event evs[512];
    uint64_t t0 = load_now_us(), last_sweep = t0, stop_at = 0;
    uint64_t end_at = a->duration_s > 0 ? t0 + (uint64_t)a->duration_s * 1000000u : 0;
    int stopping = 0;

    run->window_from = t0 + (uint64_t)a->warmup_s * 1000000u;
    run->window_to = 0;
    for (long i = 0; i < a->concurrency; i++)
        load_timer_set(run, &slots[i],
                       t0 +
                           (uint64_t)a->ramp_s * 1000000u * (uint64_t)i / (uint64_t)a->concurrency);
    for (;;) {
        uint64_t now = load_now_us(), wake = now + LOAD_SWEEP_US;
        int n, busy = 0;

        if (!stopping && ((end_at != 0 && now >= end_at) || load_interrupted ||
                          (a->count > 0 && run->started >= (uint64_t)a->count))) {
            stopping = 1;
            stop_at = now;
            /* The drain runs at falling load: not measured (a --count run
             * measures to its end). */
            run->window_to = a->count > 0 ? 0 : now;
        }
        if (load_heap.n > 0 && load_heap.v[0].at < wake)
            wake = load_heap.v[0].at;
        n = epoll_wait(run->epfd, evs, (int)(sizeof evs / sizeof evs[0]),
                       wake > now ? (int)((wake - now + 999) / 1000) : 0);
        if (n < 0 && errno != EINTR) {
            perror("ota-load: epoll_wait");
            return -1;
        }
        for (int i = 0; i < n; i++) {
            struct load_sess *s = evs[i].data.ptr;
            load_sess_on_io(run, s, evs[i].events);
            load_next(run, a, s, stopping);
        }
        now = load_now_us();
        while (load_heap.n > 0 && load_heap.v[0].at <= now) {
            struct load_timer t = load_heap_pop();
            struct load_sess *s = t.s;
            if (t.gen != s->timer_gen || s->timer_at == 0)
                continue; /* cancelled or moved */
            if (s->state == LS_IDLE) {
                s->timer_at = 0;
                load_next(run, a, s, stopping);
            } else {
                load_sess_on_timer(run, s);
                load_next(run, a, s, stopping);
            }
        }
        if (now - last_sweep >= LOAD_SWEEP_US || stopping) {
            last_sweep = now;
            for (long i = 0; i < a->concurrency; i++) {
                struct load_sess *s = &slots[i];
                if (s->state != LS_IDLE && s->deadline != 0 && now >= s->deadline) {
                    load_sess_on_deadline(run, s);
                    load_next(run, a, s, stopping);
                }
                if (s->state != LS_IDLE)
                    busy = 1;
            }
            if (stopping && !busy)
                return 0;
            if (stopping && load_interrupted && now - stop_at > LOAD_STOP_GRACE_US)
                return 0;
        }
    }
}

static void load_free(struct load_run *run, struct load_sess *slots, long n)
{
    if (slots != NULL) {
        for (long i = 0; i < n; i++) {
            if (slots[i].fd >= 0)
                close(slots[i].fd);
            sim_card_free(slots[i].card);
        }
        free(slots);
    }
    if (run != NULL) {
        for (size_t i = 0; i < run->ncodes; i++)
            free(run->codes[i]);
        free(run->codes);
        if (run->epfd >= 0)
            close(run->epfd);
        free(run);
    }
    free(load_heap.v);
    load_heap.v = NULL;
}

/* Everything before the loop; returns 0 or the exit status. */
static int load_setup(struct load_args *a, struct load_run *run, struct load_sess *slots)
{
    if (wsc_url_parse(a->url, &run->url) != 0 || run->url.tls)
        return load_usage("--url wants ws://HOST[:PORT]/PATH (no TLS: use a local proxy)");
    run->delay_ms = a->delay_ms;
    run->timeout_ms = a->timeout_ms;
    run->batch = a->batch;
    run->rng =
        a->have_seed ? a->seed : randombytes_random() | ((uint64_t)randombytes_random() << 32);
    if (run->rng == 0)
        run->rng = 0x9E3779B97F4A7C15ULL;
    load_hist_init(&run->session_us);
    load_hist_init(&run->exchange_us);
    load_hist_init(&run->exchange_ledger_us);
    load_hist_init(&run->exchange_card_us);
    for (int i = 0; i < LOAD_OP_COUNT; i++)
        load_hist_init(&run->tap_us[i]);
    if (a->codes_file != NULL && load_read_codes(a->codes_file, run) != 0)
        return 1;
    if (a->mix != NULL) {
        if (load_parse_mix(a->mix, run->mix) != 0)
            return load_usage("--mix wants check=W,topup=W with a positive total");
    } else {
        run->mix[run->ncodes > 0 ? LOAD_OP_TOPUP : LOAD_OP_CHECK] = 1;
    }
    if (load_resolve(run) != 0)
        return 1;
    load_raise_nofile(a->concurrency + 64);
    if (load_make_cards(a, slots, a->concurrency, &run->rng) != 0)
        return 1;
    run->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (run->epfd < 0) {
        perror("ota-load: epoll_create1");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct load_args a;
    struct load_run *run;
    struct load_sess *slots;
    struct sigaction sa;
    int help = 0, r;
    uint64_t t0;
    double secs;

    r = load_parse_args(argc, argv, &a, &help);
    if (r != 0)
        return r;
    if (help) { /* 1: --help, 2: --version */
        fputs(help == 2 ? OTA_VERSION_LINE("ota-load") : LOAD_USAGE "\n" LOAD_HELP, stdout);
        return 0;
    }
    if (sodium_init() < 0)
        return 1;
    run = calloc(1, sizeof *run);
    slots = calloc((size_t)a.concurrency, sizeof *slots);
    if (run == NULL || slots == NULL) {
        fprintf(stderr, "ota-load: out of memory for %ld sessions\n", a.concurrency);
        load_free(run, slots, 0);
        return 1;
    }
    for (long i = 0; i < a.concurrency; i++)
        slots[i].fd = -1;
    run->epfd = -1;
    r = load_setup(&a, run, slots);
    sodium_memzero(a.keys, sizeof a.keys);
    if (r != 0) {
        load_free(run, slots, a.concurrency);
        return r;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = load_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    t0 = load_now_us();
    r = load_loop(run, &a, slots);
    secs = (double)(load_now_us() - t0) / 1e6;
    if (run->window_to == 0)
        run->window_to = load_now_us();
    if (run->window_to < run->window_from)
        run->window_from = run->window_to;
    load_report(&a, run, secs);
    r = r != 0 || run->completed == 0 || load_count_of(run, "ok") != run->completed;
    load_free(run, slots, a.concurrency);
    return r ? 1 : 0;
}
