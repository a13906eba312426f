/* zmq_floor: the round-trip time of an empty exchange between two
 * processes over the same ZeroMQ sockets and transport the gateway and a
 * worker use (ROUTER bound on ipc://, DEALER connected), with no work at
 * either end.  tests/bench/run prints it next to the gateway's own
 * added-time histogram: it is the floor under the server-added time per
 * exchange on this machine (two processes, each message crossing ZeroMQ's
 * I/O threads on both sides).
 *
 *   zmq_floor [ROUNDS [PAUSE_US]]   (defaults 4000 rounds, 2000 us pause)
 *
 * The pause between rounds lets the CPUs go idle, as they do between a
 * phone's answers.  The same exchange over a plain Unix socketpair (one
 * wake-up each way instead of ZeroMQ's three) is measured too, to show how
 * much of the floor is ZeroMQ's.  Beside the time, the CPU both processes
 * spent per exchange (all their threads: getrusage, wait4), the floor
 * under the gateway's and a worker's CPU per exchange.  Prints one line
 * of JSON. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_us(const struct rusage *r)
{
    return (double)(r->ru_utime.tv_sec + r->ru_stime.tv_sec) * 1e6 +
           (double)(r->ru_utime.tv_usec + r->ru_stime.tv_usec);
}

/* CPU of this process since `before`, plus the child's whole life (its
 * start-up is small against thousands of rounds), per round. */
static double cpu_per_round(const struct rusage *before, const struct rusage *child, long rounds)
{
    struct rusage now;
    getrusage(RUSAGE_SELF, &now);
    return (cpu_us(&now) - cpu_us(before) + cpu_us(child)) / (double)rounds;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The worker's side: answers every message with a message of the same
 * size until it gets an empty one. */
static int echo(const char *endpoint)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    char buf[512];
    if (s == NULL || zmq_connect(s, endpoint) != 0 || zmq_send(s, "", 0, 0) != 0)
        return 1;
    for (;;) {
        int n = zmq_recv(s, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        if (zmq_send(s, buf, (size_t)n, 0) != n)
            return 1;
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}

static void percentiles(uint64_t *rtt, long rounds, double out[3])
{
    qsort(rtt, (size_t)rounds, sizeof *rtt, cmp_u64);
    out[0] = (double)rtt[rounds / 2] / 1e3;
    out[1] = (double)rtt[rounds * 9 / 10] / 1e3;
    out[2] = (double)rtt[rounds * 99 / 100] / 1e3;
}

/* The same exchange over a socketpair between two processes. */
static int unix_floor(long rounds, long pause_us, uint64_t *rtt, double *cpu)
{
    struct rusage before, child_ru;
    int sv[2];
    uint8_t buf[512] = {0};
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
        return -1;
    pid_t child = fork();
    if (child == 0) {
        close(sv[0]);
        ssize_t n;
        while ((n = read(sv[1], buf, sizeof buf)) > 0)
            if (write(sv[1], buf, (size_t)n) != n)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    getrusage(RUSAGE_SELF, &before);
    for (long i = 0; i < rounds; i++) {
        if (pause_us > 0)
            usleep((useconds_t)pause_us);
        uint64_t t0 = now_ns();
        if (write(sv[0], buf, 43) != 43 || read(sv[0], buf, sizeof buf) != 43)
            return -1;
        rtt[i] = now_ns() - t0;
    }
    close(sv[0]);
    wait4(child, NULL, 0, &child_ru);
    *cpu = cpu_per_round(&before, &child_ru, rounds);
    return 0;
}

/* ZeroMQ: ROUTER bound here, the DEALER in a child, as gateway and worker. */
static int zmq_rounds(long rounds, long pause_us, uint64_t *rtt, double *cpu)
{
    struct rusage before, child_ru;
    char dir[] = "/tmp/zmq-floor.XXXXXX", endpoint[64], path[64];
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(endpoint, sizeof endpoint, "ipc://%s/s", dir);
    snprintf(path, sizeof path, "%s/s", dir);
    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    int rc = -1;
    if (r == NULL || zmq_bind(r, endpoint) != 0) {
        fprintf(stderr, "zmq_floor: bind %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        goto out;
    }
    pid_t child = fork();
    if (child == 0)
        _exit(echo(endpoint));
    /* The peer's hello gives its routing id; then 43-byte messages, about
     * a wire frame with a short APDU. */
    uint8_t id[256], msg[64] = {0x01}, buf[512];
    int idlen = zmq_recv(r, id, sizeof id, 0);
    if (idlen <= 0 || zmq_recv(r, buf, sizeof buf, 0) < 0)
        goto out;
    getrusage(RUSAGE_SELF, &before);
    for (long i = 0; i < rounds; i++) {
        if (pause_us > 0)
            usleep((useconds_t)pause_us);
        uint64_t t0 = now_ns();
        if (zmq_send(r, id, (size_t)idlen, ZMQ_SNDMORE) < 0 || zmq_send(r, msg, 43, 0) < 0 ||
            zmq_recv(r, buf, sizeof buf, 0) < 0 || zmq_recv(r, buf, sizeof buf, 0) < 0)
            goto out;
        rtt[i] = now_ns() - t0;
    }
    zmq_send(r, id, (size_t)idlen, ZMQ_SNDMORE);
    zmq_send(r, "", 0, 0);
    wait4(child, NULL, 0, &child_ru);
    *cpu = cpu_per_round(&before, &child_ru, rounds);
    rc = 0;
out:
    if (r != NULL)
        zmq_close(r);
    zmq_ctx_term(ctx);
    unlink(path);
    rmdir(dir);
    return rc;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 4000;
    long pause_us = argc > 2 ? atol(argv[2]) : 2000;
    if (rounds < 1 || pause_us < 0) {
        fprintf(stderr, "usage: zmq_floor [ROUNDS [PAUSE_US]]\n");
        return 2;
    }
    uint64_t *rtt = calloc((size_t)rounds, sizeof *rtt);
    double z[3], u[3], zcpu = 0, ucpu = 0;
    if (rtt == NULL || zmq_rounds(rounds, pause_us, rtt, &zcpu) != 0)
        return 1;
    percentiles(rtt, rounds, z);
    if (unix_floor(rounds, pause_us, rtt, &ucpu) != 0)
        return 1;
    percentiles(rtt, rounds, u);
    printf("{\"rounds\":%ld,\"pause_us\":%ld,\"zmq_ipc_us\":[%.1f,%.1f,%.1f],"
           "\"unix_socketpair_us\":[%.1f,%.1f,%.1f],\"zmq_ipc_cpu_us\":%.1f,"
           "\"unix_socketpair_cpu_us\":%.1f}\n",
           rounds, pause_us, z[0], z[1], z[2], u[0], u[1], u[2], zcpu, ucpu);
    free(rtt);
    return 0;
}
