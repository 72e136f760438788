#!/bin/sh
# Installs what glassbox needs to build and test on Debian 12, and nothing else.
# Safe to run repeatedly: apt-get is only called when a package is missing, and
# npm only when the tokenizer oracle is not yet installed.
set -eu

# Build: compiler toolchain, BLAS, stb, cJSON, PCRE2, utf8proc, Check,
# libmicrohttpd and libcurl (the server and its client, serve/).
# Test oracles: Debian's PyTorch and NumPy (numbers and gradients),
# sentencepiece (Llama 2 tokenizer), Node.js + npm (Hugging Face tokenizers).
# libopenblas0-openmp: tests check that glassbox recognises OpenBLAS's OpenMP
# build too; the pthread build stays the system's default (higher priority).
PKGS="gcc make pkg-config libc6-dev
libopenblas-dev libstb-dev libcjson-dev libpcre2-dev libutf8proc-dev
libmicrohttpd-dev libcurl4-openssl-dev
libopenblas0-openmp check libsubunit-dev
python3 python3-torch python3-numpy python3-sentencepiece
valgrind"
# Machines that already carry Node.js (with its bundled npm) keep it: Debian's npm
# package would conflict with a Node.js that did not come from Debian.
command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

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
if command -v npm >/dev/null 2>&1 && [ ! -d "$oracle/node_modules/tokenizers" ]; then
    mkdir -p "$oracle"
    (cd "$oracle" && npm install --silent --no-audit --no-fund tokenizers@0.23.2 >/dev/null) ||
        echo "install-deps: warning: npm install tokenizers@0.23.2 failed; tokenizer oracle tests will skip"
fi
exit 0
