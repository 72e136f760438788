#!/bin/sh
# Installs what glassbox needs on Debian 12, and nothing else:
#   sh tools/install-deps.sh          building and running (make, make demo, make install)
#   sh tools/install-deps.sh --test   that, and what `make check` needs: Check, g++, valgrind
#                                     and the test oracles
# Safe to run repeatedly: apt-get is only called when a package is missing, and
# npm only when the tokenizer oracle is not yet installed.
set -eu

test=0
case "${1:-}" in
--test) test=1 ;;
"") ;;
*) echo "usage: sh tools/install-deps.sh [--test]" >&2; exit 2 ;;
esac

# Build and run: compiler toolchain, BLAS, stb, cJSON, PCRE2, utf8proc,
# libmicrohttpd and libcurl (the server and its client, serve/).
PKGS="gcc make pkg-config libc6-dev
libopenblas-dev libstb-dev libcjson-dev libpcre2-dev libutf8proc-dev
libmicrohttpd-dev libcurl4-openssl-dev"
# Tests: Check, g++ (a C++ program on the headers), valgrind; the oracles:
# Debian's PyTorch and NumPy (numbers and gradients), sentencepiece (Llama 2
# tokenizer), Node.js + npm (Hugging Face tokenizers).
# libopenblas0-openmp: tests check that glassbox recognises OpenBLAS's OpenMP
# build too; the pthread build stays the system's default (higher priority).
if [ "$test" = 1 ]; then
    PKGS="$PKGS check libsubunit-dev g++ valgrind libopenblas0-openmp
python3 python3-torch python3-numpy python3-sentencepiece"
    # Machines that already carry Node.js (with its bundled npm) keep it: Debian's
    # npm package would conflict with a Node.js that did not come from Debian.
    command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
fi

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "install-deps: installing$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# Hugging Face's tokenizers library (official Node binding), the tokenizer oracle.
here=$(cd "$(dirname "$0")/.." && pwd)
oracle="$here/build/oracle-node"
if [ "$test" = 1 ] && command -v npm >/dev/null 2>&1 && [ ! -d "$oracle/node_modules/tokenizers" ]; then
    mkdir -p "$oracle"
    (cd "$oracle" && npm install --silent --no-audit --no-fund tokenizers@0.23.2 >/dev/null) ||
        echo "install-deps: warning: npm install tokenizers@0.23.2 failed; tokenizer oracle tests will skip"
fi
exit 0
