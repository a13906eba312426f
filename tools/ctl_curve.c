/* ctl_curve: `ota-ctl keys curve-gen FILE` writes a CurveZMQ key pair for
 * the gateway (gateway.curve_secret_file) or a remote worker
 * (worker.curve_secret_file): FILE (mode 0600, both keys) and FILE.pub
 * (the public key, for gateway.curve_allowed_keys or
 * worker.gateway_public_key).  It never prints the secret key and never
 * overwrites a key file. */
#include "ctl_curve.h"

#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "ctl.h"
#include "curve_key.h"

int ctl_curve_gen(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: ota-ctl keys curve-gen FILE\n");
        return CTL_EXIT_USAGE;
    }
    struct curve_keypair kp;
    char err[512];
    if (zmq_curve_keypair(kp.pub, kp.sec) != 0) {
        fprintf(stderr, "ota-ctl: this libzmq has no CurveZMQ support: %s\n",
                zmq_strerror(zmq_errno()));
        return CTL_EXIT_FAIL;
    }
    int rc = curve_key_write(argv[0], &kp, err, sizeof err);
    curve_keypair_wipe(&kp);
    if (rc != 0) {
        fprintf(stderr, "ota-ctl: %s\n", err);
        return CTL_EXIT_FAIL;
    }
    /* Read back: what was written is what the gateway and worker will read. */
    if (curve_key_load(argv[0], &kp, err, sizeof err) != 0) {
        fprintf(stderr, "ota-ctl: %s\n", err);
        return CTL_EXIT_FAIL;
    }
    printf("wrote %s (key pair, mode 0600) and %s.pub\npublic-key = %s\n", argv[0], argv[0],
           kp.pub);
    curve_keypair_wipe(&kp);
    return CTL_EXIT_OK;
}
