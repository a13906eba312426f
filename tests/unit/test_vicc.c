/* Tests for tools/vicc.c: the vpcd control codes and ATR, the reader-level
 * GET DATA (UID), that committed changes reach the card file before the
 * answer and reads never rewrite it, and the length-prefixed TCP framing
 * against a fake vpcd on a loopback port. */
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ota_err.h"
#include "sim_card.h"
#include "vicc.h"

static const uint8_t test_uid[7] = {0x04, 0x5A, 0x11, 0x22, 0x33, 0x44, 0x80};
static char card_path[64];
static uint8_t out[1024];

static void make_blank_card(void)
{
    strcpy(card_path, "/tmp/test_vicc.XXXXXX");
    int fd = mkstemp(card_path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    struct sim_card *c = sim_card_new(test_uid, sizeof test_uid, SIM_PICC_DES0);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sim_card_save(c, card_path), 0);
    sim_card_free(c);
}

static void remove_card(void)
{
    unlink(card_path);
}

START_TEST(atr_and_control_codes)
{
    make_blank_card();
    struct vicc_card *vc = vicc_card_open(card_path);
    ck_assert_ptr_nonnull(vc);
    size_t n = 99;
    uint8_t ctl = VICC_CTRL_ATR;
    ck_assert_int_eq(vicc_card_message(vc, &ctl, 1, out, sizeof out, &n), 0);
    ck_assert_uint_eq(n, 6);
    ck_assert_mem_eq(out, "\x3B\x81\x80\x01\x80\x80", 6);
    /* TCK: the XOR of T0 .. TCK is zero. */
    uint8_t x = 0;
    for (size_t i = 1; i < n; i++)
        x ^= out[i];
    ck_assert_uint_eq(x, 0);

    const uint8_t silent[] = {VICC_CTRL_ON, VICC_CTRL_OFF, VICC_CTRL_RESET};
    for (size_t i = 0; i < sizeof silent; i++) {
        n = 99;
        ck_assert_int_eq(vicc_card_message(vc, &silent[i], 1, out, sizeof out, &n), 0);
        ck_assert_uint_eq(n, 0);
    }
    vicc_card_close(vc);
    remove_card();
}
END_TEST

START_TEST(get_data_uid)
{
    make_blank_card();
    struct vicc_card *vc = vicc_card_open(card_path);
    ck_assert_ptr_nonnull(vc);
    size_t n = 0;
    ck_assert_int_eq(
        vicc_card_message(vc, (const uint8_t *)"\xFF\xCA\x00\x00\x00", 5, out, sizeof out, &n), 0);
    ck_assert_uint_eq(n, 9);
    ck_assert_mem_eq(out, test_uid, 7);
    ck_assert_mem_eq(out + 7, "\x90\x00", 2);
    /* ATS (P1 = 01) is not reported. */
    ck_assert_int_eq(
        vicc_card_message(vc, (const uint8_t *)"\xFF\xCA\x01\x00\x00", 5, out, sizeof out, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_mem_eq(out, "\x6A\x81", 2);
    ck_assert_int_eq(
        vicc_card_message(vc, (const uint8_t *)"\xFF\x00\x00\x00\x00", 5, out, sizeof out, &n), 0);
    ck_assert_mem_eq(out, "\x6E\x00", 2);
    vicc_card_close(vc);
    remove_card();
}
END_TEST

/* A factory card allows CreateApplication without authentication (PICC
 * key settings 0x0F), so a committed change needs no crypto here. */
START_TEST(saves_changes_not_reads)
{
    static const uint8_t get_version[] = {0x90, 0x60, 0x00, 0x00, 0x00};
    static const uint8_t create_app[] = {0x90, 0xCA, 0x00, 0x00, 0x05, 0x33,
                                         0x22, 0x11, 0x0F, 0x81, 0x00};
    static const uint8_t get_aids[] = {0x90, 0x6A, 0x00, 0x00, 0x00};
    struct stat st;
    size_t n = 0;

    make_blank_card();
    struct vicc_card *vc = vicc_card_open(card_path);
    ck_assert_ptr_nonnull(vc);
    unlink(card_path);

    ck_assert_int_eq(vicc_card_message(vc, get_version, sizeof get_version, out, sizeof out, &n),
                     0);
    ck_assert_uint_ge(n, 2);
    ck_assert_mem_eq(out + n - 2, "\x91\xAF", 2);
    ck_assert_int_ne(stat(card_path, &st), 0); /* a read does not write the file */

    ck_assert_int_eq(vicc_card_message(vc, create_app, sizeof create_app, out, sizeof out, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_mem_eq(out, "\x91\x00", 2);
    ck_assert_int_eq(stat(card_path, &st), 0); /* the change is on disk */
    vicc_card_close(vc);

    /* Another process loading the file sees the application. */
    struct sim_card *c = sim_card_load(card_path);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sim_card_transceive(c, get_aids, sizeof get_aids, out, sizeof out, &n), 0);
    ck_assert_uint_eq(n, 5);
    ck_assert_mem_eq(out, "\x33\x22\x11\x91\x00", 5);
    sim_card_free(c);
    remove_card();
}
END_TEST

START_TEST(open_missing_file_fails)
{
    ck_assert_ptr_null(vicc_card_open("/nonexistent/dir/card"));
}
END_TEST

static volatile sig_atomic_t child_stop;

static void child_on_term(int sig)
{
    (void)sig;
    child_stop = 1;
}

static void send_msg(int fd, const uint8_t *p, size_t n)
{
    uint8_t hdr[2] = {(uint8_t)(n >> 8), (uint8_t)n};
    ck_assert_int_eq(send(fd, hdr, 2, 0), 2);
    ck_assert_int_eq(send(fd, p, n, 0), (ssize_t)n);
}

static size_t recv_msg(int fd, uint8_t *p, size_t cap)
{
    uint8_t hdr[2];
    ck_assert_int_eq(recv(fd, hdr, 2, MSG_WAITALL), 2);
    size_t n = (size_t)hdr[0] << 8 | hdr[1];
    ck_assert_uint_le(n, cap);
    ck_assert_int_eq(recv(fd, p, n, MSG_WAITALL), (ssize_t)n);
    return n;
}

/* The parent plays vpcd: it listens, the child (vicc_serve) connects. */
START_TEST(serves_vpcd_over_tcp)
{
    make_blank_card();
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(ls, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(ls, 1), 0);
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(sa.sin_port));

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct sigaction act;
        memset(&act, 0, sizeof act);
        act.sa_handler = child_on_term;
        sigaction(SIGTERM, &act, NULL);
        alarm(20);
        struct vicc_card *vc = vicc_card_open(card_path);
        if (vc == NULL)
            _exit(3);
        int rc = vicc_serve(vc, "127.0.0.1", port, &child_stop);
        vicc_card_close(vc);
        _exit(rc == 0 ? 0 : 4);
    }
    alarm(20);
    int fd = accept(ls, NULL, NULL);
    ck_assert_int_ge(fd, 0);

    uint8_t ctl = VICC_CTRL_ON;
    send_msg(fd, &ctl, 1);
    ctl = VICC_CTRL_ATR;
    send_msg(fd, &ctl, 1);
    size_t n = recv_msg(fd, out, sizeof out);
    ck_assert_uint_eq(n, 6);
    ck_assert_uint_eq(out[0], 0x3B);

    send_msg(fd, (const uint8_t *)"\xFF\xCA\x00\x00\x00", 5);
    n = recv_msg(fd, out, sizeof out);
    ck_assert_uint_eq(n, 9);
    ck_assert_mem_eq(out, test_uid, 7);

    send_msg(fd, (const uint8_t *)"\x90\x60\x00\x00\x00", 5);
    n = recv_msg(fd, out, sizeof out);
    ck_assert_mem_eq(out + n - 2, "\x91\xAF", 2);

    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    alarm(0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    close(fd);
    close(ls);
    remove_card();
}
END_TEST

static Suite *vicc_suite(void)
{
    Suite *s = suite_create("vicc");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, atr_and_control_codes);
    tcase_add_test(tc, get_data_uid);
    tcase_add_test(tc, saves_changes_not_reads);
    tcase_add_test(tc, open_missing_file_fails);
    tcase_add_test(tc, serves_vpcd_over_tcp);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(vicc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
