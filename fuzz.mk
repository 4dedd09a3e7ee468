# fuzz.mk: the fuzz targets; the Makefile includes it.
#
# `make test` replays every seed corpus (testdata/fuzz/FuzzX/ next to each
# target) as ordinary tests. `make fuzz` searches for new failures: each
# target in turn for FUZZTIME, then a summary of the inputs each one tried.
# A failing input is written to the target's testdata/fuzz/ directory, where
# it stays as a regression test.

FUZZTIME    ?= 30s
FUZZLOGS    ?= $(CURDIR)/bin/fuzz
# package:target
FUZZTARGETS := \
	./webhook:FuzzHandle \
	./webhook:FuzzArrivalHTTP \
	./internal/policy:FuzzDecode \
	./internal/engine:FuzzDecide \
	./internal/engine:FuzzArrival \
	./internal/input:FuzzDecode

.PHONY: fuzz

## fuzz: run each fuzz target for FUZZTIME (default 30s) and sum up the inputs tried.
fuzz:
	@mkdir -p $(FUZZLOGS)
	@for t in $(FUZZTARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; log=$(FUZZLOGS)/$$(basename $$pkg)-$$name.log; \
	  echo "== $$name in $$pkg for $(FUZZTIME)"; \
	  go test $$pkg -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) 2>&1 | tee $$log; \
	done
	@echo "== inputs tried"
	@total=0; for t in $(FUZZTARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; log=$(FUZZLOGS)/$$(basename $$pkg)-$$name.log; \
	  n=$$(grep -o 'execs: [0-9]*' $$log | tail -n 1 | grep -o '[0-9]*' || echo 0); \
	  printf '%-28s %12s\n' "$$pkg $$name" "$$n"; total=$$((total + n)); \
	done; printf '%-28s %12s\n' total "$$total"
