# build fragment, included by Makefile.am: the project's protocol document
# (installed with the other documentation) and the scripts that make its
# annotated example from a real run.
dist_doc_DATA += docs/PROTOCOL.md
EXTRA_DIST += docs/example-session.sh docs/annotate_trace.py
