# build fragment, included by Makefile.am: the libFuzzer harnesses are
# built by tests/fuzz/run.sh (clang), not by make; they and their seed
# corpora ship in the tarball so that a release can be fuzzed too.
EXTRA_DIST += tests/fuzz/run.sh tests/fuzz/fuzz_sim.c tests/fuzz/fuzz_unwrap.c tests/fuzz/corpus
