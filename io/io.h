/* glassbox io: tokenizers and checkpoint files (safetensors, Hugging Face
 * model directories). Depends on the tensor and nn layers only.
 *
 * Usage (compiled as a test, tests/test_header_examples.c): see each section.
 */
#ifndef GB_IO_H
#define GB_IO_H

#include "../nn/nn.h"
#include "../tensor/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== tokenizers ========================================================= */

/* Tokenizers: Hugging Face's tokenizer.json with a BPE model (GPT-2, Llama 2,
 * Llama 3, Mistral, ...) and GPT-2's older vocab.json + merges.txt pair. The
 * ids are those of Hugging Face's `tokenizers` library, byte for byte; see
 * docs/tokenizers.md for the components read.
 *
 *     gb_tokenizer *tok = gb_tokenizer_open("../shared/tokenizers/gpt2");
 *     if (!tok) { fprintf(stderr, "%s\n", gb_last_error()); return 1; }
 *     int32_t *ids = NULL;
 *     size_t n = 0;
 *     char *text = NULL;
 *     if (gb_tokenizer_encode(tok, "Hello world", 11, true, &ids, &n) == GB_OK &&  // [15496, 995]
 *         gb_tokenizer_decode(tok, ids, n, false, &text, NULL) == GB_OK)          // "Hello world"
 *         printf("%zu ids: %s\n", n, text);
 *     free(text);
 *     free(ids);
 *     gb_tokenizer_free(tok);
 *
 * Input text is bytes; ill-formed UTF-8 is first replaced by U+FFFD, one per
 * maximal ill-formed subsequence (what Hugging Face sees when such bytes
 * reach it through Python or JavaScript). A handle may be shared by
 * threads: encoding fills a cache and works in scratch arrays kept in the
 * tokenizer, so its calls take turns on a lock (open one per thread for
 * encoding in parallel). */
typedef struct gb_tokenizer gb_tokenizer;

/* Open a tokenizer from path: a directory holding tokenizer.json (preferred)
 * or vocab.json + merges.txt, or one of those files. tokenizer_config.json,
 * config.json and generation_config.json beside it, when present, name the
 * BOS/EOS/PAD tokens. Fails naming the file and the component: GB_ERR_IO or
 * GB_ERR_NOT_FOUND (no such file), GB_ERR_FORMAT (corrupt), GB_ERR_UNSUPPORTED
 * (a component glassbox does not implement, e.g. a WordPiece model). */
gb_tokenizer *gb_tokenizer_open(const char *path);
void gb_tokenizer_free(gb_tokenizer *tok);

/* Encode len bytes of text into *ids (malloc'd, caller frees; *n of them).
 * add_special runs the post-processor (e.g. Llama's BOS). Added and special
 * tokens written in the text are matched either way, as Hugging Face does. */
gb_status gb_tokenizer_encode(gb_tokenizer *tok, const char *text, size_t len, bool add_special, int32_t **ids,
                              size_t *n);
/* Decode n ids into *text (malloc'd, NUL-terminated; *len bytes when len is
 * not NULL: the text may hold NUL bytes). skip_special drops special tokens.
 * An id outside the vocabulary fails with GB_ERR_INDEX. */
gb_status gb_tokenizer_decode(gb_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special, char **text,
                              size_t *len);

/* Which side padding goes in a batch: left for generation (every row ends
 * at its last real token), right for training. */
typedef enum gb_pad_side {
    GB_PAD_SIDE_LEFT,
    GB_PAD_SIDE_RIGHT,
} gb_pad_side;

/* Encode n >= 1 texts (lens[i] bytes each; lens NULL: NUL-terminated) into
 * *ids, an i64 tensor [n, T] with T the longest encoding, padded with
 * gb_tokenizer_padding_id, and *mask,
 * i64 [n, T], 1 on real tokens and 0 on padding. */
gb_status gb_tokenizer_encode_batch(gb_tokenizer *tok, int n, const char *const *texts, const size_t *lens,
                                    bool add_special, gb_pad_side side, gb_tensor **ids, gb_tensor **mask);

/* text (NUL-terminated) as the ids [1, T] int64 a trace or gb_module_run
 * takes, with the special tokens the post-processor adds; NULL on error. */
gb_tensor *gb_tokenizer_encode_ids(gb_tokenizer *tok, const char *text);

/* The token string of id as stored in the vocabulary (GPT-2's "Ġthe" for
 * " the"), owned by tok; NULL with GB_ERR_INDEX if id has none. */
const char *gb_tokenizer_token_to_string(const gb_tokenizer *tok, int32_t id);
/* The id of a token string, or -1 with GB_ERR_NOT_FOUND. */
int32_t gb_tokenizer_token_to_id(const gb_tokenizer *tok, const char *token);
/* Whether id is a special token (skipped by decode with skip_special). */
bool gb_tokenizer_is_special(const gb_tokenizer *tok, int32_t id);
/* Largest id + 1, added tokens included: the embedding rows a model needs. */
int32_t gb_tokenizer_vocab_size(const gb_tokenizer *tok);
/* BOS, EOS and PAD ids, -1 when the tokenizer has none (see docs/tokenizers.md
 * for where they come from). */
int32_t gb_tokenizer_bos_id(const gb_tokenizer *tok);
int32_t gb_tokenizer_eos_id(const gb_tokenizer *tok);
int32_t gb_tokenizer_pad_id(const gb_tokenizer *tok);
/* The id gb_tokenizer_encode_batch pads with: the pad token, else EOS, else 0. */
int32_t gb_tokenizer_padding_id(const gb_tokenizer *tok);
/* Use id for padding in gb_tokenizer_encode_batch (GB_ERR_INDEX if out of range). */
gb_status gb_tokenizer_set_pad_id(gb_tokenizer *tok, int32_t id);

/* Train a byte-level BPE tokenizer with GPT-2's layout on len bytes of text
 * and write it into out_dir (created when missing): tokenizer.json (GPT-2's
 * structure: ByteLevel pre-tokenizer, post-processor and decoder, a BPE
 * model, the special tokens as added tokens), vocab.json + merges.txt,
 * tokenizer_config.json and special_tokens_map.json. Each file is written
 * beside its name and renamed into place. gb_tokenizer_open(out_dir) and
 * Hugging Face's tokenizers load the result.
 *
 * The text is read as gb_tokenizer_encode reads it (ill-formed UTF-8 as
 * U+FFFD), cut at the special tokens written in it (they are not learned
 * from) and pre-tokenized with GPT-2's pattern. Ids 0-255 are the 256 bytes
 * (GPT-2's ids for them), then one id per new token in the order the merges
 * made it, then special_tokens (a NULL-terminated list, or NULL for none):
 * vocab_size counts all of them. Each step merges the adjacent pair with the
 * highest count over the text; equal counts go to the pair with the smaller
 * left id, then the smaller right id, so training is deterministic. It
 * stops at vocab_size tokens, or earlier when no pair is left (the text is
 * too small for the vocabulary). The first special token is BOS, EOS and UNK
 * in tokenizer_config.json, as GPT-2's <|endoftext|> is. vocab.json and
 * merges.txt hold the special tokens in the vocabulary, but only
 * <|endoftext|> is special when a tokenizer is opened from them (GPT-2's
 * convention). Fails with GB_ERR_ARG (vocab_size below 256 + the special
 * tokens, an empty or repeated special token, a special token that is also
 * a learned token, NULL text or directory) or GB_ERR_IO naming the
 * directory or file that cannot be made or written. */
gb_status gb_tokenizer_train_bpe(const char *text, size_t len, int vocab_size, const char *const *special_tokens,
                                 const char *out_dir);

/* ==== end tokenizers ===================================================== */

/* ==== safetensors ======================================================== */

/* Checkpoints in Hugging Face's safetensors format, and where to find them.
 *
 *     gb_hf_files f;                                  // config.json + weights
 *     if (gb_hf_resolve("openai-community/gpt2", &f) != GB_OK) {
 *         fprintf(stderr, "%s\n", gb_last_error());   // names what it looked for, and where
 *         return 1;
 *     }
 *     gb_safetensors *st = gb_safetensors_open(f.weights); // file, index or directory
 *     if (!st) { fprintf(stderr, "%s\n", gb_last_error()); gb_hf_files_free(&f); return 1; }
 *     for (int i = 0; i < gb_safetensors_count(st); i++)
 *         printf("%s %s\n", gb_safetensors_name(st, i),
 *                gb_safetensors_stored_dtype(st, gb_safetensors_name(st, i)));
 *     gb_tensor *w = gb_safetensors_get(st, "h.0.attn.c_attn.weight"); // f32: converted or zero-copy
 *     const char *format = gb_safetensors_metadata(st, "format");     // "pt", or NULL
 *     gb_status s = gb_safetensors_save("w.safetensors", 1, (const char *[]){"w"}, &w,
 *                                       GB_DTYPE_BF16, (const char *[]){"format", "pt", NULL});
 *     gb_tensor_free(w);          // the file stays mapped while any tensor from it lives
 *     gb_safetensors_free(st);
 *     gb_hf_files_free(&f);
 *
 * Opening reads and checks only the header(s); each get converts just the
 * tensor asked for. Errors are GB_ERR_IO (cannot read), GB_ERR_FORMAT
 * (corrupt header: every claim is checked against the file, as the reference
 * implementation does), GB_ERR_NOT_FOUND (no such file or tensor) and
 * GB_ERR_UNSUPPORTED (a valid dtype glassbox does not hold, such as F64 or
 * F8_E4M3, refused when that tensor is loaded), with messages naming the
 * file and the tensor. docs/safetensors.md has the details. */

typedef struct gb_safetensors gb_safetensors;

/* Open a .safetensors file, a sharded checkpoint's
 * model.safetensors.index.json (its shards are opened and checked too), or a
 * directory holding model.safetensors or, failing that, the index. */
gb_safetensors *gb_safetensors_open(const char *path);
void gb_safetensors_free(gb_safetensors *st);

/* Tensor names: in data order for one file, in weight_map order for an index. */
int gb_safetensors_count(const gb_safetensors *st);
const char *gb_safetensors_name(const gb_safetensors *st, int i); /* NULL out of range */
bool gb_safetensors_has(const gb_safetensors *st, const char *name);
/* The path it was opened with. */
const char *gb_safetensors_path(const gb_safetensors *st);

/* The tensor called name, as a new reference. F16 and BF16 are converted to
 * f32; F32 (and I64, I32, U8, BOOL, kept as they are) is served zero-copy
 * from the mapping when aligned, else copied. The tensor is named `name`.
 * NULL with GB_ERR_NOT_FOUND for an unknown name. Pages are private: an
 * in-place edit changes this process's copy, never the file. */
gb_tensor *gb_safetensors_get(gb_safetensors *st, const char *name);
/* The same in the stored dtype (F16/BF16 zero-copy too). */
gb_tensor *gb_safetensors_get_stored(gb_safetensors *st, const char *name);

/* Stored dtype and shape without loading (shape has room for GB_MAX_DIMS;
 * any out-param may be NULL). GB_ERR_UNSUPPORTED when glassbox cannot hold
 * the tensor (its dtype, or more than GB_MAX_DIMS dims). */
gb_status gb_safetensors_info(const gb_safetensors *st, const char *name, gb_dtype *dtype, int *ndim,
                              int64_t *shape);
/* The dtype as the file spells it ("F32", "BF16", "F64", ...), for any
 * tensor; NULL with GB_ERR_NOT_FOUND for an unknown name. */
const char *gb_safetensors_stored_dtype(const gb_safetensors *st, const char *name);

/* The file's __metadata__ (string -> string); for a sharded checkpoint, the
 * shards' maps merged (the first shard with a key wins). */
const char *gb_safetensors_metadata(const gb_safetensors *st, const char *key); /* NULL if absent */
int gb_safetensors_metadata_count(const gb_safetensors *st);
const char *gb_safetensors_metadata_key(const gb_safetensors *st, int i);

/* Write n named tensors (any strides) to path as one safetensors file.
 * Floating tensors are stored as dtype (GB_DTYPE_F32, F16 or BF16, rounding
 * to nearest even); I64, I32, U8 and BOOL tensors keep their dtype. metadata
 * is NULL or key, value, key, value, ..., NULL. The layout is the reference
 * implementation's: tensors by descending dtype alignment then name, header
 * padded with spaces to 8 bytes. The file is written beside path and renamed
 * into place, so a failed save leaves no partial file. Only a regular file
 * is written: GB_ERR_IO, naming path, when path is a directory, FIFO,
 * device, socket or symbolic link (write to the link's target instead), or
 * a read-only file (refused also for root); a replaced file keeps its
 * permission bits. */
gb_status gb_safetensors_save(const char *path, int n, const char *const *names, gb_tensor *const *tensors,
                              gb_dtype dtype, const char *const *metadata);

/* Fill every parameter of a module tree (one built by hand, like the
 * walkthrough's Sequential) from a safetensors file by its dotted name
 * ("layer1.weight"), as PyTorch's load_state_dict(strict=True): a missing
 * tensor (GB_ERR_NOT_FOUND), an unexpected one (GB_ERR_FORMAT) or a shape
 * that differs (GB_ERR_SHAPE) fails, naming every problem at once in
 * PyTorch's words, and changes nothing. Tensors are converted to float32.
 * gb_module_load_from reads an open file and may allow tensors that are
 * not parameters (a file holding an input too). */
gb_status gb_module_load(gb_module *m, const char *path);
gb_status gb_module_load_from(gb_module *m, gb_safetensors *st, bool allow_unexpected);

/* Where a model's files are. */
typedef struct gb_hf_files {
    char *dir;     /* holds config.json and the tokenizer files */
    char *config;  /* dir/config.json */
    char *weights; /* model.safetensors, model.safetensors.index.json or the file given */
} gb_hf_files;

/* Resolve a model argument, without network:
 *   - a directory with config.json and model.safetensors (or the index);
 *   - a .safetensors (or index .json) file, with config.json beside it;
 *   - a Hub id, "org/name" or "name", optionally "@revision" (a branch or
 *     commit), in the Hugging Face cache (gb_hf_cache_dir):
 *     models--org--name/snapshots/<refs/main>/.
 * An existing path wins over a Hub id. GB_ERR_NOT_FOUND names every place
 * looked at. Free with gb_hf_files_free. */
gb_status gb_hf_resolve(const char *model, gb_hf_files *out);
void gb_hf_files_free(gb_hf_files *f);
/* The Hub cache directory, as huggingface_hub finds it: $HF_HUB_CACHE, else
 * $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub. Caller frees. */
char *gb_hf_cache_dir(void);

/* ==== end safetensors ==================================================== */

/* ==== models ============================================================ */

/* Hugging Face checkpoints as glassbox modules: GPT2LMHeadModel,
 * LlamaForCausalLM (Llama 2, 3, 3.1, 3.2) and MistralForCausalLM, built from
 * config.json with the module tree and parameter names transformers builds,
 * and filled from safetensors without conversion: f32, f16 and bf16 weights
 * are used from the files' mapping as stored (see gb_model_opts to convert
 * to f32).
 *
 *     gb_model *m = gb_model_open("openai-community/gpt2", NULL); // dir, file or Hub id
 *     if (!m) { fprintf(stderr, "%s\n", gb_last_error()); return 1; }
 *     gb_module *net = gb_model_module(m);                        // borrowed
 *     gb_tensor *logits;
 *     gb_module_run(net, NULL, ids, &logits);                     // ids [B, T] i64 -> [B, T, vocab]
 *     gb_model_free(m);
 */

typedef struct gb_model gb_model;

typedef struct gb_model_opts {
    /* Convert f16/bf16 weights to float32 when opening: a copy in memory,
     * twice the size of bf16 files, needed only to take gradients of the
     * weights themselves (training). By default every weight keeps its
     * stored dtype and is used from the files' mapping without a copy; ops
     * read f16/bf16 weights with f32 activations and f32 arithmetic. An open
     * whose conversion would not fit in the memory available fails
     * (GB_ERR_ALLOC) before allocating it. */
    bool f32_weights;
    /* Called after each tensor is loaded with the bytes of the weight files
     * read so far and in all (for a progress bar; the library prints
     * nothing). May be NULL. */
    void (*progress)(uint64_t done, uint64_t total, void *ctx);
    void *progress_ctx;
} gb_model_opts;

/* Open a model directory, a .safetensors file (config.json beside it) or a
 * Hub id in the local Hugging Face cache (see gb_hf_resolve). A missing
 * file, an unsupported model_type or rope_scaling, a tensor whose shape
 * disagrees with the config, a missing tensor or an unexpected one (other
 * than the non-persistent attention-mask buffers of old GPT-2 files) fail
 * with a message naming the file and the tensor. All of this is checked
 * against the files' headers before anything is allocated (a layer count
 * the checkpoint does not hold fails before the tree is built), and the
 * address space the mapping needs (under ulimit -v) and the memory an
 * f32_weights conversion needs are checked against what the process has:
 * GB_ERR_ALLOC with both figures. opts may be NULL.
 * An open model may be run by any number of threads at once (nn/nn.h,
 * Threads): its tree, parameters and buffers are only read by runs. */
gb_model *gb_model_open(const char *model, const gb_model_opts *opts);
void gb_model_free(gb_model *m);
gb_module *gb_model_module(const gb_model *m);
const char *gb_model_type(const gb_model *m); /* config.json's model_type: "gpt2", "llama", "mistral" */
const char *gb_model_dir(const gb_model *m);  /* where config.json (and the tokenizer) are */
/* The tokenizer beside the model's files (gb_tokenizer_open of its
 * directory), a new one the caller frees; NULL with GB_ERR_NOT_FOUND when
 * there is none. gb_lm keeps one with its model. */
gb_tokenizer *gb_model_tokenizer(const gb_model *m);
int64_t gb_model_vocab_size(const gb_model *m);
int64_t gb_model_max_positions(const gb_model *m);
/* BOS token id, or -1 when the config has none. */
int64_t gb_model_bos_id(const gb_model *m);
/* Whether id is one of the config's EOS ids (an int or a list in config.json). */
bool gb_model_is_eos(const gb_model *m, int64_t id);
/* Configs as parsed: GPT-2's, or a Llama-family model's (NULL when the
 * model is of the other kind). */
const gb_gpt2_config *gb_model_gpt2_config(const gb_model *m);
const gb_llama_config *gb_model_llama_config(const gb_model *m);
/* The open model whose module tree root is (gb_model_module's inverse), or
 * NULL: how code that has only a trace of a model finds its config (lm/'s
 * memory estimate for traced generation). */
const gb_model *gb_model_of(const gb_module *root);
/* The config as `glassbox info` prints it, whatever the architecture:
 * "model_type: gpt2\n" and one "name: value\n" line per field the
 * architecture shows. Caller frees; NULL with GB_ERR_ALLOC. */
char *gb_model_config_str(const gb_model *m);
/* Total bytes of the weight files. */
uint64_t gb_model_file_bytes(const gb_model *m);
/* The module path of a part of the model (gb_part, nn/nn.h), whatever the
 * architecture: gb_model_part(m, GB_PART_LAYERS) is "transformer.h" for
 * GPT-2 and "model.layers" for a Llama; parts inside a block are relative
 * to it ("attn", "self_attn"). NULL for a value outside the enum. */
const char *gb_model_part(const gb_model *m, gb_part part);

/* ==== end models ======================================================== */

#ifdef __cplusplus
}
#endif

#endif
