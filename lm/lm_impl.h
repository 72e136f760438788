/* Private to lm/: what its files share. */
#ifndef GB_LM_IMPL_H
#define GB_LM_IMPL_H

#include "lm.h"

/* Refuse, before anything is spent, a generation of B prompts of T tokens
 * with o's new tokens (and max_length) on model m whose attention scores,
 * logits, KV cache and ids would not fit in the memory available (or the
 * address space left): GB_ERR_ALLOC with both figures and what helps. GB_OK
 * when m is NULL (a module built by hand: its sizes are unknown). Plain and
 * traced generation both ask it. */
gb_status gb__lm_check_generate(const gb_model *m, int64_t B, int64_t T, const gb_decode_opts *o);

#endif
