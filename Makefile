# glassbox build. `make` builds the libraries and the CLI into build/;
# `make check` builds and runs every test; see README.md for the rest.
#
#   make NATIVE=1     optimise for this machine's CPU (-march=native)
#   make SANITIZE=1   AddressSanitizer + UBSan build, in build/san/
#   make VALGRIND=1 check   run the tests under valgrind
#   make TSAN=1 check  ThreadSanitizer build, in build/tsan/, running the
#                     suites that use threads (see TSAN_SUITES below)

CC      ?= gcc
PREFIX  ?= /usr/local
PYTHON  ?= /usr/bin/python3

ARCH    := $(if $(NATIVE),-march=native,-march=x86-64-v2)
CFLAGS  ?= -O2 -g
# stb_ds's hash maps spell gcc's __typeof__ as typeof, a keyword only in gnu11.
CFLAGS  += -std=c11 -D_GNU_SOURCE -Dtypeof=__typeof__ -Wall -Wextra -Werror -fPIC -fopenmp $(ARCH) -I.
LDLIBS  := -lmicrohttpd -lcurl -lcjson -lpcre2-8 -lutf8proc -lm -ldl -lpthread
BUILD   := build
ifdef SANITIZE
BUILD   := build/san
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ORACLE_DIR = $(BUILD)/oracle
# ThreadSanitizer needs objects without ifunc resolvers (target_clones,
# tensor/simd.h): GB_NO_CLONES leaves them out. It reads the plain build's
# oracles (the same PyTorch numbers) rather than computing them again.
ifdef TSAN
BUILD   := build/tsan
CFLAGS  += -fsanitize=thread -fno-omit-frame-pointer -DGB_NO_CLONES
LDFLAGS += -fsanitize=thread
ORACLE_DIR = build/oracle
endif

# The version is written once, in tensor/tensor.h (GB_VERSION_MAJOR/MINOR/PATCH):
# the shared library's file names and SONAME, glassbox.pc and --version use it.
VERSION := $(shell sed -n 's/^\#define GB_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$$/\2/p' tensor/tensor.h | paste -sd. -)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME  := libglassbox.so.$(SOMAJOR)

LAYERS  := tensor autograd nn hooks trace io lm session serve
LIB_SRC := $(foreach d,$(LAYERS),$(wildcard $(d)/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_SRC := $(wildcard tools/cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC:= $(wildcard tests/test_*.c)
TEST_OBJ:= $(TEST_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/tests/gbtest.o $(BUILD)/obj/tests/main.o
EXAMPLES:= $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
ORACLES := $(patsubst tests/oracle/%.py,$(ORACLE_DIR)/%.txt,$(filter-out tests/oracle/common.py,$(wildcard tests/oracle/*.py)))
BENCH_SRC := $(wildcard tools/bench/*.c)
HEADERS := glassbox.h $(foreach d,$(LAYERS),$(wildcard $(d)/*.h) $(wildcard $(d)/*.def))

.PHONY: all check demo bench bench-big bench-remote install clean model docs-img fuzz fuzz-run man
all: $(BUILD)/libglassbox.a $(BUILD)/libglassbox.so $(BUILD)/glassbox $(BUILD)/corpus

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# stb_ds hashes 4-byte keys with d[3] << 24 on an int: harmless on gcc, but
# undefined behaviour UBSan reports. It is third-party code we do not edit.
ifdef SANITIZE
$(BUILD)/obj/tensor/stb_ds.o: CFLAGS += -fno-sanitize=shift
endif

# stb_ds advances one process-wide hash seed whenever a hash map is made,
# a data race between threads that make maps. Its one implementation in
# glassbox (tensor/stb_ds.c) is compiled from Debian's header with that
# seed made thread-local, generated here (never stored in the repository).
$(BUILD)/gen/stb_ds_tls.h: /usr/include/stb/stb_ds.h
	@mkdir -p $(dir $@)
	sed 's/^static size_t stbds_hash_seed=/static _Thread_local size_t stbds_hash_seed=/' $< > $@.tmp
	@grep -q '^static _Thread_local size_t stbds_hash_seed=' $@.tmp || { echo "$<: stbds_hash_seed not found"; exit 1; }
	mv $@.tmp $@
$(BUILD)/obj/tensor/stb_ds.o: $(BUILD)/gen/stb_ds_tls.h
$(BUILD)/obj/tensor/stb_ds.o: CFLAGS += -I$(BUILD)/gen

$(BUILD)/libglassbox.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# libglassbox.so.MAJOR.MINOR.PATCH with SONAME libglassbox.so.MAJOR, and the
# two links to it; only the public API is exported (tools/glassbox.map).
$(BUILD)/libglassbox.so.$(VERSION): $(LIB_OBJ) tools/glassbox.map
	$(CC) -shared $(LDFLAGS) -fopenmp -Wl,-soname,$(SONAME) -Wl,--version-script=tools/glassbox.map -o $@ \
	    $(LIB_OBJ) $(LDLIBS)

$(BUILD)/libglassbox.so: $(BUILD)/libglassbox.so.$(VERSION)
	ln -sf libglassbox.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $@

$(BUILD)/glassbox: $(CLI_OBJ) $(BUILD)/libglassbox.a
	$(CC) $(LDFLAGS) -fopenmp -o $@ $(CLI_OBJ) $(BUILD)/libglassbox.a $(LDLIBS)

# The language-model corpus generator (tools/corpus/corpus.c); it uses the
# library's PCG32 only.
CORPUS_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/corpus/*.c))
$(BUILD)/corpus: $(CORPUS_OBJ) $(BUILD)/libglassbox.a
	$(CC) $(LDFLAGS) -fopenmp -o $@ $(CORPUS_OBJ) $(BUILD)/libglassbox.a $(LDLIBS)

# Tests: every tests/test_NAME.c defines `Suite *gb_suite_NAME(void)`; the
# runner's list of suites is generated from the file names.
$(BUILD)/tests/suites.h: $(TEST_SRC)
	@mkdir -p $(dir $@)
	@printf 'GB_SUITE(%s)\n' $(patsubst tests/test_%.c,%,$(TEST_SRC)) > $@

$(BUILD)/obj/tests/main.o: tests/main.c $(BUILD)/tests/suites.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(BUILD)/tests -c $< -o $@

# The usage examples of the public headers, as functions (see the script).
PUBLIC_HEADERS := tensor/tensor.h autograd/autograd.h nn/nn.h hooks/hooks.h trace/trace.h io/io.h lm/lm.h session/session.h serve/serve.h
$(BUILD)/tests/header_examples.inc: tools/extract_examples.py $(PUBLIC_HEADERS)
	@mkdir -p $(dir $@)
	$(PYTHON) tools/extract_examples.py $@ $(PUBLIC_HEADERS)

$(BUILD)/obj/tests/test_header_examples.o: tests/test_header_examples.c $(BUILD)/tests/header_examples.inc
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(BUILD)/tests -MMD -MP -c $< -o $@

# The CLI without its main (renamed gb_cli_main), for the CLI's fuzz target's replay.
CLI_LIB_OBJ := $(filter-out $(BUILD)/obj/tools/cli/main.o,$(CLI_OBJ)) $(BUILD)/obj/tools/cli/main_lib.o
$(BUILD)/obj/tools/cli/main_lib.o: tools/cli/main.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Dmain=gb_cli_main -c $< -o $@

# tests/test_oom.c makes the library's allocations fail one by one: they
# reach libc through its wrappers (-Wl,--wrap), which pass them on otherwise.
OOM_WRAP := $(foreach f,malloc calloc realloc strdup strndup aligned_alloc,-Wl,--wrap=$(f))
$(BUILD)/tests/run: $(TEST_OBJ) $(CLI_LIB_OBJ) $(BUILD)/libglassbox.a
	$(CC) $(LDFLAGS) -fopenmp $(OOM_WRAP) -o $@ $(TEST_OBJ) $(CLI_LIB_OBJ) $(BUILD)/libglassbox.a $(LDLIBS) $$(pkg-config --libs check)

# Expected values come from PyTorch: each tests/oracle/NAME.py writes NAME.txt.
$(ORACLE_DIR)/%.txt: tests/oracle/%.py tests/oracle/common.py
	@mkdir -p $(dir $@)
	$(PYTHON) $< $@.tmp && mv $@.tmp $@

# The demo's and the bundled model's oracles run train.py's GPT-2 on it.
$(ORACLE_DIR)/demo.txt: tests/oracle/train.py $(wildcard models/gpt2-facts/*)
$(ORACLE_DIR)/bundled.txt: tests/oracle/demo.py tests/oracle/train.py tests/oracle/safetensors.py $(wildcard models/gpt2-facts/*)
$(ORACLE_DIR)/lens.txt: tests/oracle/demo.py tests/oracle/train.py tests/oracle/safetensors.py $(wildcard models/gpt2-facts/*)

# Sessions: PyTorch on the bundled model, and a second checkpoint it writes.
$(ORACLE_DIR)/session.txt: tests/oracle/demo.py tests/oracle/train.py tests/oracle/safetensors.py $(wildcard models/gpt2-facts/*)

# The model fixtures are written by the generator that models.py runs.
$(ORACLE_DIR)/models.txt: tests/fixtures/make_models.py tests/oracle/safetensors.py
# train.py writes its init.safetensors with safetensors.py's writer.
$(ORACLE_DIR)/train.txt: tests/oracle/safetensors.py

$(BUILD)/examples/%: examples/%.c $(wildcard examples/*.h) $(HEADERS) $(BUILD)/libglassbox.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libglassbox.a $(LDLIBS)

# A C++ program on glassbox.h and the shared library (tests/test_embed.c runs it).
CXX     ?= g++
$(BUILD)/tests/embed_cxx: tests/cxx/embed.cpp $(HEADERS) $(BUILD)/libglassbox.so
	@mkdir -p $(dir $@)
	$(CXX) -std=c++11 -Wall -Wextra -Werror -pedantic -I. $(filter -fsanitize%,$(CFLAGS)) $(LDFLAGS) -o $@ $< \
	    -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lglassbox

# Tests ask for absurd sizes on purpose and expect GB_ERR_ALLOC, which
# ASan would turn into an abort: let its allocator return NULL as libc's does.
ifdef SANITIZE
TEST_ENV_SAN := ASAN_OPTIONS=allocator_may_return_null=1
endif
TEST_ENV := $(TEST_ENV_SAN) GB_TEST_CFLAGS="$(filter -fsanitize%,$(CFLAGS))" GB_ORACLE_DIR=$(ORACLE_DIR) GB_SHARED_DIR=../shared GB_NODE_ORACLE=build/oracle-node GB_BUILD_DIR=$(BUILD)
ifdef VALGRIND
TEST_RUN := CK_FORK=no valgrind --error-exitcode=1 --num-callers=40 --leak-check=full --errors-for-leak-kinds=definite,indirect --suppressions=tests/valgrind.supp -q
endif

# Under TSAN=1, only the suites whose tests run threads of their own
# (TSAN_SUITES; the whole suite under TSan takes too long for CI), each with
# one OpenMP thread per application thread: Debian's libgomp is not
# instrumented, so TSan cannot see its barriers and would report every
# value an OpenMP region shares. It checks glassbox's own state between
# threads (one model shared by several), not OpenMP's. The remote suite
# runs the CLI too.
TSAN_SUITES := threads exec session remote
ifdef TSAN
check: $(BUILD)/tests/run $(BUILD)/glassbox $(ORACLES)
	for s in $(TSAN_SUITES); do $(TEST_ENV) OMP_NUM_THREADS=1 CK_RUN_SUITE=$$s $(BUILD)/tests/run || exit 1; done
else
check: all $(BUILD)/tests/run $(ORACLES) $(EXAMPLES) $(BUILD)/tests/embed_cxx $(BUILD)/prefix/lib/pkgconfig/glassbox.pc
	sh tools/check_stb.sh
	$(TEST_ENV) $(TEST_RUN) $(BUILD)/tests/run
endif

$(BUILD)/bench: $(BENCH_SRC) $(wildcard tools/bench/*.h) $(BUILD)/libglassbox.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(BENCH_SRC) $(BUILD)/libglassbox.a $(LDLIBS)

# make bench [REPS=n] [PARTS="t128 ..."]: every part, or the ones named.
bench: $(BUILD)/bench
	$(PYTHON) tools/bench/bench.py $(BUILD)/bench $(or $(REPS),10) $(PARTS)

# The server under load (tools/loadtest/load.c): 8 clients x 50 small traces.
$(BUILD)/load: tools/loadtest/load.c $(BUILD)/libglassbox.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libglassbox.a $(LDLIBS)

bench-remote: $(BUILD)/load
	$(BUILD)/load models/gpt2-facts --clients 8 --requests 50

# The bundled model, from nothing: corpus, tokenizer, training (docs/training.md).
# One training thread: at a fixed thread count the output is the same bytes,
# and models/gpt2-facts is exactly what this target writes.
MODEL_OUT := models/gpt2-facts
model: $(BUILD)/glassbox $(BUILD)/corpus
	@mkdir -p $(BUILD)/model
	$(BUILD)/corpus -o $(BUILD)/model/corpus.txt
	$(BUILD)/glassbox train-tokenizer $(BUILD)/model/corpus.txt --vocab 1024 --out $(BUILD)/model/tokenizer
	$(BUILD)/glassbox train --corpus $(BUILD)/model/corpus.txt --tokenizer $(BUILD)/model/tokenizer \
	    --out $(MODEL_OUT) --threads 1 --log $(BUILD)/model/loss.csv --plot $(MODEL_OUT)/loss.png

# A Llama-3-8B-shaped bf16 checkpoint (16 GB, written once into BIG_DIR and
# kept there for later runs; rm -r it when done) and the big part of the
# benchmark on it. Not part of `make check` or `make bench`.
BIG_DIR ?= /tmp/glassbox-llama8b
$(BUILD)/make-llama: tools/bigmodel/make_llama.c
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

bench-big: $(BUILD)/bench $(BUILD)/make-llama $(BUILD)/glassbox
	$(BUILD)/make-llama $(BIG_DIR)
	$(BUILD)/bench --big $(BIG_DIR) --cli $(BUILD)/glassbox big

# The pictures of docs/recipes.md, from the bundled model (committed under docs/img/).
GB_IMG := $(BUILD)/glassbox
EIFFEL := 'The Eiffel Tower is in the city of'
docs-img: $(BUILD)/glassbox
	@mkdir -p docs/img
	$(GB_IMG) lens -p $(EIFFEL) --top 1 --png docs/img/lens.png > /dev/null
	$(GB_IMG) patch --clean $(EIFFEL) --corrupt 'The Colosseum is in the city of' --png docs/img/patch.png > /dev/null
	$(GB_IMG) attn -p $(EIFFEL) --layer 1 --png docs/img/attn.png > /dev/null
	$(GB_IMG) attn -p $(EIFFEL) --layer 1 --scores --png docs/img/attn_scores.png > /dev/null
	$(GB_IMG) trace -p 'The Colosseum is in the city of' -e 'rome = transformer.h[1].output[0][:, -1, :]' \
	    -p $(EIFFEL) -e 'paris = transformer.h[1].output[0][:, -1, :]' \
	    -p 'The Louvre is located in the city of' -e 'plain = (lm_head.output[0, :, 465] - lm_head.output[0, :, 498]).save()' \
	    -p 'The Louvre is located in the city of' \
	    -e 'transformer.h[1].output[0][:, -1, :] += rome - paris' \
	    -e 'steered = (lm_head.output[0, :, 465] - lm_head.output[0, :, 498]).save()' \
	    --png docs/img/steer.png --title "logit(' Rome') - logit(' Paris'), plain and steered" > /dev/null
	$(GB_IMG) trace -p $(EIFFEL) -e 'transformer.wte.output.requires_grad_()' \
	    $(foreach l,0 1 2 3,-e 'h$(l) = (transformer.h[$(l)].input * transformer.h[$(l)].input.grad).sum(-1).save()') \
	    -e 'lm_head.output[0, -1, 498].backward()' \
	    --png docs/img/attr.png --title "Input x gradient of the ' Paris' logit, entering each block" > /dev/null

# libFuzzer targets (tests/fuzz/fuzz_NAME.c, each a gb_fuzz_NAME entry point
# that test_fuzz.c also replays over tests/fuzz/corpus/NAME in `make check`),
# built with clang under ASan + UBSan into build/fuzz/. Run one with e.g.
#   build/fuzz/fuzz_statement -max_len=65536 -jobs=1 build/fuzz/corpus/statement tests/fuzz/corpus/statement
# (the first directory collects what it finds; tests/fuzz/README.md).
FUZZ_CC     ?= clang
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Dtypeof=__typeof__ -fopenmp -I. -fno-omit-frame-pointer \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined -Wno-pass-failed
FUZZ_OBJ    := $(LIB_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_BINS   := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz: $(FUZZ_BINS)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

# clang 14 rejects "f16c" in __builtin_cpu_supports: this build runs the
# plain C kernels (what the fuzzers exercise is parsing, not arithmetic).
build/fuzz/obj/tensor/blas.o: FUZZ_CFLAGS += '-D__builtin_cpu_supports(s)=0'

# stb_ds (third-party, not edited): the shift of the gcc build's exception,
# and its string arena's storage[8] written past its declared size.
build/fuzz/obj/tensor/stb_ds.o: FUZZ_CFLAGS += -fno-sanitize=shift,bounds

build/fuzz/libglassbox.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h build/fuzz/libglassbox.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/libglassbox.a $(LDLIBS)

# The CLI's target runs the CLI itself, its main renamed (so does its replay
# in the test runner, $(CLI_LIB_OBJ)).
build/fuzz/obj/tools/cli/main.o: FUZZ_CFLAGS += -Dmain=gb_cli_main
build/fuzz/fuzz_cli: $(CLI_SRC:%.c=build/fuzz/obj/%.o)
build/fuzz/fuzz_cli: tests/fuzz/fuzz_cli.c tests/fuzz/fuzz.h build/fuzz/libglassbox.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(CLI_SRC:%.c=build/fuzz/obj/%.o) build/fuzz/libglassbox.a $(LDLIBS)

-include $(shell find build/fuzz/obj -name '*.d' 2>/dev/null)

# Each target in turn for FUZZ_TIME seconds, one process (the machine is
# shared): new inputs go to build/fuzz/corpus/NAME, crashes and the log to
# build/fuzz/logs/. Keep the interesting ones (small, a few dozen a target)
# in tests/fuzz/corpus/NAME.
FUZZ_TIME ?= 300
FUZZ_RUN  ?= $(patsubst build/fuzz/fuzz_%,%,$(FUZZ_BINS))
FUZZ_OPTS_statement := -max_len=65536
FUZZ_OPTS_config    := -rss_limit_mb=3072
FUZZ_OPTS_cli       := -close_fd_mask=3
fuzz-run: fuzz
	@mkdir -p build/fuzz/logs
	for t in $(FUZZ_RUN); do mkdir -p build/fuzz/corpus/$$t && \
	  build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=30 -print_final_stats=1 $(FUZZ_OPTS) \
	    $$(case $$t in statement) echo "$(FUZZ_OPTS_statement)";; config) echo "$(FUZZ_OPTS_config)";; \
	                   cli) echo "$(FUZZ_OPTS_cli)";; esac) \
	    -artifact_prefix=build/fuzz/logs/$$t- build/fuzz/corpus/$$t tests/fuzz/corpus/$$t \
	    > build/fuzz/logs/$$t.log 2>&1; echo "$$t: exit $$? ($$(grep -h 'Done [0-9]* runs' build/fuzz/logs/$$t.log))"; done

# The main job: the walkthrough on the bundled model (or MODEL=dir: any GPT-2 or Llama).
demo: all
	$(BUILD)/glassbox demo $(MODEL)

# The manual page is generated from the CLI's option tables; test_cli checks
# that docs/glassbox.1 is current (run this after changing an option).
man: $(BUILD)/glassbox
	$(BUILD)/glassbox --man > docs/glassbox.1

install: all
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/glassbox
	install -D -m 644 docs/glassbox.1 $(DESTDIR)$(PREFIX)/share/man/man1/glassbox.1
	install -m 644 $(BUILD)/libglassbox.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libglassbox.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libglassbox.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libglassbox.so
	install -m 755 $(BUILD)/glassbox $(DESTDIR)$(PREFIX)/bin/
	for f in models/*/*; do install -D -m 644 $$f $(DESTDIR)$(PREFIX)/share/glassbox/$$f; done
	for h in glassbox.h $(PUBLIC_HEADERS); do install -D -m 644 $$h $(DESTDIR)$(PREFIX)/include/glassbox/$$h; done
	for pc in glassbox glassbox-static; do \
	    sed -e 's|@PREFIX@|$(PREFIX)|; s|@VERSION@|$(VERSION)|' tools/$$pc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/$$pc.pc; done

# An installation in build/ for the tests that build outside programs with
# pkg-config alone (tests/test_embed.c).
$(BUILD)/prefix/lib/pkgconfig/glassbox.pc: $(BUILD)/libglassbox.a $(BUILD)/libglassbox.so $(BUILD)/glassbox $(HEADERS) \
	    tools/glassbox.pc.in tools/glassbox-static.pc.in docs/glassbox.1
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(BUILD)/prefix) >/dev/null

clean:
	rm -rf build/obj build/san build/tsan build/gen build/tests build/examples build/oracle build/bench build/make-llama build/glassbox build/libglassbox.*
