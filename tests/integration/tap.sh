# tap.sh: the test scripts' one way to report checks (sourced).
#
#   ok "what held"   fail "what did not"   check DESCRIPTION COMMAND...
#   tap_summary      # prints the counts; returns 1 if anything failed
#
# check runs one command.  `check D [ a ] && [ b ]` asserts only [ a ]:
# write a compound condition as if/then with ok and fail, or fold it into
# one test ([ "$x/$y" = 1/2 ]).

TESTS_OK=0
TESTS_FAILED=0

ok() {
    TESTS_OK=$((TESTS_OK + 1))
    echo "ok $((TESTS_OK + TESTS_FAILED)) - $*"
}

fail() {
    TESTS_FAILED=$((TESTS_FAILED + 1))
    echo "not ok $((TESTS_OK + TESTS_FAILED)) - $*"
}

# check DESCRIPTION COMMAND...: ok if the command succeeds.
check() {
    _d=$1
    shift
    if "$@"; then ok "$_d"; else fail "$_d"; fi
}

tap_summary() {
    echo "# $TESTS_OK passed, $TESTS_FAILED failed"
    [ "$TESTS_FAILED" -eq 0 ]
}
