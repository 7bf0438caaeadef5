# svckit build.
#
# Plain GNU Make, on purpose: the tree is small, every rule fits on this page, and
# a newcomer reads it top to bottom without learning a build generator. Sources
# are found by wildcard, so adding a file never means editing this file:
#
#   src/<layer>/*.c            -> $(BUILD)/lib/libsvckit.a
#   services/<name>/*.c        -> $(BUILD)/bin/<name>
#   examples/<name>/*.c        -> $(BUILD)/bin/<name>
#   tools/svckit/*.c           -> $(BUILD)/bin/svckit  (with tools/svckit/templates/ embedded)
#   services/gateway/{dashboard,explorer}/* -> embedded in $(BUILD)/bin/gateway (tools/svckit/embed.sh)
#   tests/unit/<layer>/test_*.c -> $(BUILD)/tests/unit/<layer>/test_*  (one binary each)
#   tests/integration/*.c      -> $(BUILD)/tests/bin/<name>            (helper programs)
#   fuzz/*_fuzz.c              -> $(BUILD)/fuzz/<name>   (corpus replayer; `make fuzz` for libFuzzer)
#
# Variables: SAN=1 builds with ASan+UBSan into build/san; CI=true adds -Werror;
# STATIC=0 links release programs against shared libraries; TLS=1 links TLS
# to NATS (mbed TLS) into every program, in build/tls (build/san-tls with SAN=1);
# PG=1 links PostgreSQL (libpq), in build/pg (build/san-pg with SAN=1).
#
# `make install PREFIX=/opt/svckit` (default /usr/local; DESTDIR honoured)
# installs the public headers, the static library, lib/pkgconfig/svckit.pc and
# the svckit CLI, for services built outside this tree (README, "Writing a
# service outside this repository"); `make uninstall` removes exactly those.

CC      ?= cc
SAN     ?= 0
TLS     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build/san$(if $(filter 1,$(TLS)),-tls)$(if $(filter 1,$(PG)),-pg)
OPT     ?= -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build$(if $(filter 1,$(TLS)),/tls)$(if $(filter 1,$(PG)),/pg)
OPT     ?= -O2
LDSAN   :=
endif

PKGS    := libuv jansson libsodium sqlite3 zlib
WARN    := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wformat=2 -Wno-unused-parameter
ifeq ($(CI),true)
WARN    += -Werror
endif
CFLAGS  ?=
CFLAGS  += -std=gnu11 -g $(OPT) $(WARN) -Iinclude -Isrc -MMD -MP -pthread \
           $(shell pkg-config --cflags $(PKGS) libpq 2>/dev/null)
# Release programs are linked statically from Debian's archives (STATIC=0 for
# shared libraries; ASan needs them, so SAN=1 implies it). Measured on the demo:
# 1.4 MiB idle RSS static against 2.7 MiB dynamic, since every touched page of
# a shared library counts in RSS; and an image needs no loader. glibc warns that
# libuv's getpwuid_r and getaddrinfo want its NSS modules at run time: names in
# /etc/hosts and DNS resolve without them.
STATIC  ?= $(if $(filter 1,$(SAN) $(PG)),0,1)
LIBDIR  := /usr/lib/$(shell $(CC) -print-multiarch 2>/dev/null)
# Variables that ask pkg-config are expanded when a rule uses them (=, not :=):
# on a fresh machine the packages arrive with $(DEPS_STAMP), after this file
# was read.
ifeq ($(STATIC),1)
SYS_LDLIBS := $(LIBDIR)/libuv_a.a $(LIBDIR)/libjansson.a $(LIBDIR)/libsodium.a $(LIBDIR)/libsqlite3.a \
           $(LIBDIR)/libhttp_parser.a $(LIBDIR)/libz.a -lpthread -ldl -lm
LDFLAGS += -static -Wl,--gc-sections
else
SYS_LDLIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread -lm
endif
LDLIBS   = $(SYS_LDLIBS)
LDFLAGS += $(LDSAN) -pthread

# TLS to NATS (src/net/tls.c) is in libsvckit.a like the rest, but nothing
# refers to it except through the weak symbol svc__tls (src/net/tls.h), so the
# linker takes it, and mbed TLS with it, only into a program linked with
# TLS_LDFLAGS and TLS_LDLIBS: every program of a TLS=1 build, and the test
# helper msgsvc-tls in every build. Other programs carry no byte of mbed TLS
# (bench/README.md has the sizes) and refuse tls:// at start, naming TLS=1.
TLS_LDFLAGS := -Wl,--require-defined=svc__tls
ifeq ($(STATIC),1)
TLS_LDLIBS := $(LIBDIR)/libmbedtls.a $(LIBDIR)/libmbedx509.a $(LIBDIR)/libmbedcrypto.a
else
TLS_LDLIBS := -lmbedtls -lmbedx509 -lmbedcrypto
endif
ifeq ($(TLS),1)
LDFLAGS += $(TLS_LDFLAGS)
LDLIBS   = $(TLS_LDLIBS) $(SYS_LDLIBS)
endif

# PostgreSQL (src/store/pg.c, docs/store-postgres.md), as TLS: in libsvckit.a,
# reached only through the weak symbol svc__pg, so only programs linked with
# PG_LDFLAGS and -lpq carry libpq: every program of a PG=1 build (linked
# dynamically: Debian's libpq.a needs static libraries Debian does not ship),
# and the unit test of svc_stmt in every build. Other programs refuse a
# postgres:// DATABASE_URL at start, naming PG=1.
PG_LDFLAGS := -Wl,--require-defined=svc__pg
DYN_LDLIBS = $(shell pkg-config --libs $(PKGS) libpq 2>/dev/null) -lhttp_parser -lpthread -lm
ifeq ($(PG),1)
LDFLAGS += $(PG_LDFLAGS)
LDLIBS   = $(DYN_LDLIBS)
endif

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CFLAGS  += -DSVC_VERSION='"$(VERSION)"' -DSVC_GIT_REV='"$(GIT_REV)"'

LIB_SRC   := $(wildcard src/*/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/lib/libsvckit.a

SERVICES  := $(notdir $(patsubst %/,%,$(dir $(wildcard services/*/main.c))))
EXAMPLES  := $(notdir $(patsubst %/,%,$(dir $(wildcard examples/*/main.c))))
PROGRAMS  := $(SERVICES) $(EXAMPLES)
BINS      := $(PROGRAMS:%=$(BUILD)/bin/%) $(if $(wildcard tools/svckit/*.c),$(BUILD)/bin/svckit)

UNIT_SRC  := $(wildcard tests/unit/*/test_*.c)
UNIT_BINS := $(UNIT_SRC:%.c=$(BUILD)/%)
UNIT_MAIN := $(BUILD)/obj/tests/unit/test_main.o

ITEST_SRC := $(wildcard tests/integration/*.c)
ITEST_BINS:= $(ITEST_SRC:tests/integration/%.c=$(BUILD)/tests/bin/%) $(BUILD)/tests/bin/msgsvc-tls

FUZZ_SRC  := $(wildcard fuzz/*_fuzz.c)
FUZZ_BINS := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)

DEPS_STAMP := build/.deps-ok

.PHONY: install uninstall all lib bins tests deps test test-unit test-integration run fuzz clean images test-images bench demo-cluster format
# Objects of tests and fuzz targets are intermediates by make's rules; keep them,
# so a second `make` does not compile them again.
.SECONDARY:
all: bins tests

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@bash scripts/deps.sh
	@mkdir -p $(dir $@) && touch $@

lib: $(LIB)
bins: $(BINS)
tests: $(UNIT_BINS) $(ITEST_BINS) $(FUZZ_BINS)

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(AR) rcs $@ $^

# One rule per program kind; objects of a program are every .c in its folder.
define program_rule
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(2)/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) $$^ $$(LDLIBS) -o $$@
endef
$(foreach s,$(SERVICES),$(eval $(call program_rule,$(s),services/$(s))))
$(foreach s,$(EXAMPLES),$(eval $(call program_rule,$(s),examples/$(s))))
$(eval $(call program_rule,svckit,tools/svckit))

# The templates of `svckit new`, compiled into the CLI (never read at run time).
TEMPLATES := $(shell find tools/svckit/templates -type f -name '*.tmpl' 2>/dev/null)
$(BUILD)/gen/templates.c: tools/svckit/embed.sh $(TEMPLATES)
	@mkdir -p $(dir $@)
	sh tools/svckit/embed.sh tools/svckit/templates $@
$(BUILD)/obj/gen/templates.o: $(BUILD)/gen/templates.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools/svckit -c $< -o $@
$(BUILD)/bin/svckit: $(BUILD)/obj/gen/templates.o

# The gateway's pages (HTML, CSS, JS), compiled into the gateway the same way:
# services/gateway/PAGE/ becomes the table gw_PAGE_files.
define gateway_page_rule
$(BUILD)/gen/$(1).c: tools/svckit/embed.sh $(wildcard services/gateway/$(1)/*)
	@mkdir -p $$(dir $$@)
	sh tools/svckit/embed.sh services/gateway/$(1) $$@ "" gw_$(1)_files gw_file gateway.h
$(BUILD)/obj/gen/$(1).o: $(BUILD)/gen/$(1).c | $(DEPS_STAMP)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) -Iservices/gateway -c $$< -o $$@
$(BUILD)/bin/gateway: $(BUILD)/obj/gen/$(1).o
endef
$(foreach p,dashboard explorer,$(eval $(call gateway_page_rule,$(p))))

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(UNIT_MAIN) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The store's tests run on both backends (tests/run.sh runs them again with
# DATABASE_URL): linked with libpq (dynamically) in every build.
$(BUILD)/tests/unit/store/%: $(BUILD)/obj/tests/unit/store/%.o $(UNIT_MAIN) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -pthread $(PG_LDFLAGS) $^ $(DYN_LDLIBS) -o $@

$(BUILD)/tests/bin/%: $(BUILD)/obj/tests/integration/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# msgsvc with TLS, for tests/integration/test_nats_tls.py (msgsvc itself
# checks that a program without TLS refuses tls://).
$(BUILD)/tests/bin/msgsvc-tls: $(BUILD)/obj/tests/integration/msgsvc.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(TLS_LDFLAGS) $^ $(TLS_LDLIBS) $(LDLIBS) -o $@

# The replayer: each fuzz target linked with a main() that feeds it every file of
# its corpus, so the test suite replays corpora and crash reproducers with gcc.
# (mbed TLS for tls_san_fuzz; a target that does not use it links none of it.)
$(BUILD)/fuzz/%: $(BUILD)/obj/fuzz/%.o $(BUILD)/obj/fuzz/replay.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(TLS_LDLIBS) $(LDLIBS) -o $@

# `make test`: installs what is missing, builds the release and the ASan/UBSan
# trees, the programs of the TLS build (build/tls, for test_nats_tls.py) and
# of the PostgreSQL build (build/pg, and its outboxsvc for test_store_outbox.py:
# the PostgreSQL pass of tests/run.sh),
# and runs every test against both. tests/run.sh prints the closing tally.
test: $(DEPS_STAMP)
	$(MAKE) --no-print-directory all
	$(MAKE) --no-print-directory SAN=1 all
	$(MAKE) --no-print-directory TLS=1 bins
	$(MAKE) --no-print-directory PG=1 bins build/pg/tests/bin/outboxsvc
	bash tests/run.sh

# `make run`: the reference system as local processes; Ctrl-C stops all of it.
# The build says one line per phase (the compiler's output only if it fails);
# `make run SAN=1` runs the ASan/UBSan binaries.
run:
	@MAKE='$(MAKE)' BUILD='$(BUILD)' bash scripts/build-quiet.sh
	@SVCKIT_BUILD="$${SVCKIT_BUILD:-$(BUILD)}" bash scripts/run.sh

# `make fuzz FUZZ_SECONDS=60 [FUZZ_TARGETS="http_fields jwt"]`: libFuzzer (clang,
# ASan+UBSan) on every target for that long, corpus grows in place.
FUZZ_SECONDS ?= 30
fuzz: $(DEPS_STAMP)
	FUZZ_TARGETS='$(FUZZ_TARGETS)' bash scripts/fuzz.sh $(FUZZ_SECONDS)

images: $(DEPS_STAMP)
	bash scripts/images.sh build

test-images: $(DEPS_STAMP)
	bash scripts/images.sh test

bench: $(DEPS_STAMP)
	$(MAKE) --no-print-directory all
	bash bench/run.sh

# `make demo-cluster`: three hosts on this machine (network namespaces, root),
# a 3-node NATS cluster with R3 JetStream; one host is cut off under load and
# healed (bench/cluster3.py; docs/deploy.md, "Three hosts on one machine").
demo-cluster: $(DEPS_STAMP)
	$(MAKE) --no-print-directory all
	SVCKIT_BUILD="$${SVCKIT_BUILD:-$(BUILD)}" /usr/bin/python3 bench/cluster3.py

clean:
	rm -rf build

# ---- install ----------------------------------------------------------------
# Always the release build: an installed library carries no sanitizer runtime.
PREFIX     ?= /usr/local
INCLUDEDIR := $(DESTDIR)$(PREFIX)/include
LIB_DEST   := $(DESTDIR)$(PREFIX)/lib
BIN_DEST   := $(DESTDIR)$(PREFIX)/bin
HEADERS    := $(wildcard include/svckit/*.h)

install: $(LIB) $(BUILD)/bin/svckit
ifeq ($(SAN),1)
	$(error make install: use the release build (without SAN=1))
endif
	@case '$(PREFIX)' in /*) ;; *) echo "make install: PREFIX must be an absolute path" >&2; exit 2 ;; esac
	install -d $(INCLUDEDIR)/svckit $(LIB_DEST)/pkgconfig $(BIN_DEST)
	install -m 644 include/svckit.h $(INCLUDEDIR)/svckit.h
	install -m 644 $(HEADERS) $(INCLUDEDIR)/svckit/
	install -m 644 $(LIB) $(LIB_DEST)/libsvckit.a
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(PKGS)|' \
	    scripts/svckit.pc.in > $(LIB_DEST)/pkgconfig/svckit.pc
	chmod 644 $(LIB_DEST)/pkgconfig/svckit.pc
	install -m 755 $(BUILD)/bin/svckit $(BIN_DEST)/svckit

uninstall:
	rm -f $(INCLUDEDIR)/svckit.h $(HEADERS:include/%=$(INCLUDEDIR)/%) \
	      $(LIB_DEST)/libsvckit.a $(LIB_DEST)/pkgconfig/svckit.pc $(BIN_DEST)/svckit
	@rmdir $(INCLUDEDIR)/svckit 2>/dev/null || true

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
