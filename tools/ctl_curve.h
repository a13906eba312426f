/* ctl_curve: `ota-ctl keys curve-gen`, the CurveZMQ key pairs of the
 * gateway and of remote workers (see common/curve_key.h). */
#ifndef OTA_CTL_CURVE_H
#define OTA_CTL_CURVE_H

/* argv: the words after "keys curve-gen".  Returns a CTL_EXIT_* code. */
int ctl_curve_gen(int argc, char **argv);

#endif
