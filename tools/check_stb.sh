#!/bin/sh
# Library code grows stb_ds arrays and hash maps only through tensor/base.h's
# checked macros (GB_ARR_PUT, GB_SH_PUT, GB_HM_GETI, ...): stb_ds's own
# macros write through realloc's result unchecked, and its lookups allocate
# a map when asked about an empty one. This lists every use of them left in
# the library's layers and the CLI (run by `make check`); arrlen, arrfree,
# hmlen, hmfree, arrpop, arrdel and arrlast allocate nothing and stay.
cd "$(dirname "$0")/.." || exit 1
grow='arrput|arrpush|arraddn|arraddnptr|arraddnindex|arraddnoff|arrsetlen|arrsetcap|arrins|arrinsn'
maps='hmput|hmputs|hmdefault|hmdefaults|hmdel|hmget|hmgets|hmgetp|hmgetp_null|hmgeti|hmgeti_ts|hmgetp_ts|hmget_ts'
strs='shput|shputi|shputs|shdefault|shdefaults|shdel|shget|shgets|shgetp|shgetp_null|shgeti|sh_new_strdup|sh_new_arena|stralloc'
found=$(grep -nE "\b($grow|$maps|$strs|stbds_[a-z_]+)[[:space:]]*\(" \
        tensor/*.c tensor/*.h autograd/*.[ch] nn/*.[ch] hooks/*.[ch] trace/*.[ch] io/*.[ch] lm/*.[ch] \
        session/*.[ch] serve/*.[ch] tools/cli/*.[ch] |
        grep -v -e '^tensor/stb_ds\.c:' -e '^tensor/base\.h:')
if [ -n "$found" ]; then
    echo "$found"
    echo "tools/check_stb.sh: stb_ds growth or lookup not checked; use tensor/base.h's GB_ARR_*/GB_HM_*/GB_SH_* macros"
    exit 1
fi
