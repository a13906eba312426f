# build fragment, included by Makefile.am (owner adds lines here)
