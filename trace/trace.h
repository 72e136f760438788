/* glassbox trace: nnsight's tracing context in C. Define interventions on a
 * model first, then run them together with one forward pass.
 *
 * Usage (compiled as a test, tests/test_header_examples.c):
 *
 *     gb_trace *tr = gb_trace_new(model, input);
 *     gb_val *h   = gb_output(tr, "layer1");                 // deferred: exists once layer1 ran
 *     gb_val *old = gb_save(gb_val_clone(h));                // keep a copy of the original
 *     gb_set_index(h, "[:, 0]", gb_scalar(tr, 0.0f));        // edit in place: layer1.output[:, 0] = 0
 *     gb_val *ids = gb_save(gb_val_argmax(gb_output(tr, "layer2"), -1, false));
 *     if (gb_trace_run(tr) != GB_OK) fprintf(stderr, "%s\n", gb_last_error());
 *     gb_tensor *t = gb_value(ids);                          // borrowed until gb_trace_free
 *     gb_trace_free(tr);
 *
 * The intervention graph. Every gb_val is a node of a graph that is plain
 * data (gb_trace_graph prints it): getters name a point in the model (a
 * module path — Hugging Face's dotted names, negative list indices allowed —
 * an event and a call index), operations combine values, actions edit the
 * model's values. When the model runs, each getter receives its value as
 * the module reaches that point, and every node runs as soon as its inputs
 * exist, in definition order. Values that were not saved are freed as soon
 * as no later node needs them.
 *
 * Call sites. The functions below are macros that record __FILE__ and
 * __LINE__ in the node, so an error — at definition time (an unknown module
 * path, an index syntax error), during scan/validate, or during the run —
 * reads "examples/setting.c:21: index 10 is out of bounds for dimension 1
 * with size 10 (indexing shape [1, 10] with [:, 10]) (layer1.output[:, 10] = 0)":
 * the site, the failing operation's message, then the intervention as an
 * expression. A definition error poisons the trace:
 * definition calls keep returning usable handles, and gb_trace_run reports
 * the first error without running anything.
 *
 * Ownership. The trace owns every gb_val; gb_value returns a tensor borrowed
 * from the trace (take a reference with gb_tensor_ref to keep it longer).
 * gb_const takes a new reference to its tensor. The model must outlive the
 * trace.
 */
#ifndef GB_TRACE_H
#define GB_TRACE_H

#include <stdio.h>

#include "../hooks/hooks.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gb_trace gb_trace;
typedef struct gb_val gb_val;

/* ---- the trace ---------------------------------------------------------- */

/* A trace of model on one input (for language models: ids [B, T], i64), or
 * on the invokes added to it when input is NULL. */
gb_trace *gb_trace_new(gb_module *model, gb_tensor *input);
void gb_trace_free(gb_trace *tr);
/* Run the model once with every intervention. GB_OK, or the first error.
 * A run that a gb_stop ended returns GB_OK: stopping is what was asked. */
gb_status gb_trace_run(gb_trace *tr);
/* Run on shapes only (no arithmetic, no weight reads, no big allocations):
 * afterwards gb_val_shape knows every value's shape, and every intervention
 * has been checked against those shapes. Returns the first problem found. */
gb_status gb_trace_scan(gb_trace *tr);
/* Generation with the interventions (nnsight's model.generate) is
 * gb_trace_generate in lm/lm.h: the decoding loop lives above trace and
 * drives an execution pass by pass (gb_exec_begin below). What it reads
 * from the trace is set here. */
/* End-of-sequence tokens for gb_trace_generate: a row that produces one is
 * padded (gb_trace_set_pad_id) from then on, and generation ends early when
 * every row has (NULL: always max_new_tokens). For a loaded model pass
 * gb_model_is_eos through a small wrapper. */
void gb_trace_set_stop_tokens(gb_trace *tr, bool (*is_stop)(int64_t id, void *ctx), void *ctx);
/* The ids after gb_trace_generate: prompt and new tokens, [B, T + n] int64
 * (borrowed from the trace; nnsight's generator.output). */
gb_tensor *gb_trace_generated(const gb_trace *tr);
/* Scan before every gb_trace_run, and refuse to run when it fails. */
void gb_trace_set_validate(gb_trace *tr, bool on);
/* The NaN guard in every run of the trace and of its executions (its
 * runs, generations and scans; nn/nn.h, gb_run_set_nan_check): the run
 * fails with GB_ERR_NONFINITE naming the first module, call and position
 * whose output holds NaN or Inf. A module's output is checked before its
 * interventions run; a value they make non-finite is caught at the next
 * module whose output it spoils. */
void gb_trace_set_nan_check(gb_trace *tr, bool on);
/* Hugging Face's attention_mask ([B, T], 1 = token, 0 = padding) and
 * position_ids ([B, T] i64) for the run (the trace takes references). */
void gb_trace_set_attention_mask(gb_trace *tr, gb_tensor *mask);
void gb_trace_set_position_ids(gb_trace *tr, gb_tensor *pos);
/* Where gb_trace_log writes (default stdout; NULL discards). */
void gb_trace_set_log(gb_trace *tr, FILE *f);
/* The seed of torch.randint in this trace's runs (gb_val_randint): each
 * run draws from PyTorch's CPU generator (MT19937) seeded with it, in the
 * order the draws were defined, so a run gives the integers PyTorch gives
 * after torch.manual_seed(seed) (only the seed's low 32 bits count, as
 * there). Default 0; a scan draws nothing. */
void gb_trace_set_seed(gb_trace *tr, uint64_t seed);
/* The intervention graph as text, one node per line. Caller frees. */
char *gb_trace_graph(const gb_trace *tr);

/* ---- invokes: several inputs in one batch -------------------------------- */

/* nnsight's tracer.invoke: on a trace made with gb_trace_new(model, NULL),
 * each invoke adds its ids ([b, t]) as rows of one batch, and getters
 * defined until gb_invoke_end see only those rows (a view: setting a whole
 * value replaces those rows; gb_set_index edits them in place). Values of
 * one invoke may be used in another. Shorter invokes are left-padded (pad
 * id 0 unless gb_trace_set_pad_id) under an attention mask, as a tokenizer
 * pads for a language model; positions stay 0..T-1 as in a Hugging Face
 * forward without position_ids (so padded GPT-2 rows see shifted
 * positions, as in nnsight; gb_trace_generate counts them from the mask). */
#define gb_invoke(tr, ids) gb_invoke_at((tr), (ids), __FILE__, __LINE__)
void gb_invoke_end(gb_trace *tr);
void gb_trace_set_pad_id(gb_trace *tr, int64_t id);

/* ---- persistent edits ---------------------------------------------------- */

/* nnsight's model.edit(): interventions kept apart and applied to later
 * traces of the model. Make an editor with gb_trace_new(model, NULL), define
 * interventions on it as on any trace (it is never run itself), and attach
 * it to each trace that should see the edited model; its interventions run
 * before the trace's own at every point, and its saved values hold what the
 * last run gave them. Attaching NULL clears the edits (clear_edits()). The
 * editor must outlive the traces that use it. */
gb_status gb_trace_use_edits(gb_trace *tr, gb_trace *edits);

/* ---- getters ------------------------------------------------------------ */

/* Output / first input of the module at path, on its first call. A module
 * that Hugging Face makes return a tuple (GPT2Block, LlamaDecoderLayer)
 * gives a tuple: index it with "[0]" for the hidden states. */
#define gb_output(tr, path) gb_getter_at((tr), (path), GB_TRACE_OP_OUTPUT, 0, __FILE__, __LINE__)
#define gb_input(tr, path) gb_getter_at((tr), (path), GB_TRACE_OP_INPUT, 0, __FILE__, __LINE__)
/* The same on the call-th call of the module (0 = first). */
#define gb_output_call(tr, path, call) gb_getter_at((tr), (path), GB_TRACE_OP_OUTPUT, (call), __FILE__, __LINE__)
/* The same on every call (nnsight's .all()): in generation, every step.
 * Each call runs the getter and everything downstream of it again, so an
 * edit applies at every step and a saved value holds the last call's. */
#define GB_CALL_ALL (-1)
#define gb_output_all(tr, path) gb_getter_at((tr), (path), GB_TRACE_OP_OUTPUT, GB_CALL_ALL, __FILE__, __LINE__)
#define gb_input_all(tr, path) gb_getter_at((tr), (path), GB_TRACE_OP_INPUT, GB_CALL_ALL, __FILE__, __LINE__)
/* A named point inside a module's forward, e.g. "transformer.h.0.attn.attn_weights". */
#define gb_point(tr, path) gb_getter_at((tr), (path), GB_TRACE_OP_POINT, 0, __FILE__, __LINE__)
/* The gradient of v, available during a backward started in this trace. */
#define gb_grad(v) gb_grad_at((v), __FILE__, __LINE__)

/* ---- deferred operations ------------------------------------------------ */

/* v[expr] with the string form of PyTorch indexing ("[:, -1, :]"); on a tuple,
 * "[i]" picks an element. */
#define gb_val_index(v, expr) gb_val_index_at((v), (expr), __FILE__, __LINE__)
#define gb_val_add(a, b) gb_val_binary_at(GB_TRACE_OP_ADD, (a), (b), __FILE__, __LINE__)
#define gb_val_sub(a, b) gb_val_binary_at(GB_TRACE_OP_SUB, (a), (b), __FILE__, __LINE__)
#define gb_val_mul(a, b) gb_val_binary_at(GB_TRACE_OP_MUL, (a), (b), __FILE__, __LINE__)
#define gb_val_div(a, b) gb_val_binary_at(GB_TRACE_OP_DIV, (a), (b), __FILE__, __LINE__)
#define gb_val_matmul(a, b) gb_val_binary_at(GB_TRACE_OP_MATMUL, (a), (b), __FILE__, __LINE__)
/* a % b and a // b, Python's (torch.remainder, torch.floor_divide): the
 * remainder takes b's sign, the quotient rounds down; exact on integers,
 * where a zero divisor fails the run (PyTorch's ZeroDivisionError). */
#define gb_val_remainder(a, b) gb_val_binary_at(GB_TRACE_OP_REMAINDER, (a), (b), __FILE__, __LINE__)
#define gb_val_floor_divide(a, b) gb_val_binary_at(GB_TRACE_OP_FLOOR_DIVIDE, (a), (b), __FILE__, __LINE__)
/* torch.randint(low, high, size): int64 integers in [low, high) of the
 * given size (up to 6 dims), drawn at each run (gb_trace_set_seed). */
#define gb_val_randint(tr, low, high, ndim, size) gb_randint_at((tr), (low), (high), (ndim), (size), __FILE__, __LINE__)
#define gb_val_sum(v, dim, keepdim) gb_val_reduce_at(GB_TRACE_OP_SUM, (v), (dim), (keepdim), __FILE__, __LINE__)
#define gb_val_mean(v, dim, keepdim) gb_val_reduce_at(GB_TRACE_OP_MEAN, (v), (dim), (keepdim), __FILE__, __LINE__)
#define gb_val_max(v, dim, keepdim) gb_val_reduce_at(GB_TRACE_OP_MAX, (v), (dim), (keepdim), __FILE__, __LINE__)
#define gb_val_argmax(v, dim, keepdim) gb_val_reduce_at(GB_TRACE_OP_ARGMAX, (v), (dim), (keepdim), __FILE__, __LINE__)
#define gb_val_sum_all(v) gb_val_unary_at(GB_TRACE_OP_SUM_ALL, (v), 0, __FILE__, __LINE__)
#define gb_val_softmax(v, dim) gb_val_unary_at(GB_TRACE_OP_SOFTMAX, (v), (dim), __FILE__, __LINE__)
#define gb_val_clone(v) gb_val_unary_at(GB_TRACE_OP_CLONE, (v), 0, __FILE__, __LINE__)
/* Functions on values with PyTorch's names and semantics (the table
 * GB_TRACE_FN_LIST below; statements call them as methods, x.exp(), or as
 * torch.exp(x)). Integer values meet float ones as in PyTorch: an int64
 * value and a float value give a float (argmax - 432.0 is float32), two
 * integer values an int64, computed exactly (argmax - 432, sum, abs, pow,
 * where, @ and topk of int64 values are int64, wrapping on overflow as
 * torch; / divides as floats; mean, softmax, log_softmax, norm,
 * cross_entropy and cosine_similarity of integers are refused at the run,
 * as torch refuses them), and comparisons give bool. Gradients flow
 * through every float result. */
#define gb_val_exp(v) GB__FN1(GB_TRACE_FN_EXP, (v), 0)
#define gb_val_log(v) GB__FN1(GB_TRACE_FN_LOG, (v), 0)
#define gb_val_abs(v) GB__FN1(GB_TRACE_FN_ABS, (v), 0)
#define gb_val_sqrt(v) GB__FN1(GB_TRACE_FN_SQRT, (v), 0)
#define gb_val_float(v) GB__FN1(GB_TRACE_FN_FLOAT, (v), 0)  /* x.float(): float32 */
#define gb_val_long(v) GB__FN1(GB_TRACE_FN_LONG, (v), 0)    /* x.long(): int64, truncating */
#define gb_val_item(v) GB__FN1(GB_TRACE_FN_ITEM, (v), 0)    /* x.item(): one element, 0-dim */
/* x.shape as an int64 [ndim] value: computed in a scan too, so a saved
 * shape (or an element of it) is readable after gb_trace_scan. */
#define gb_val_shape_of(v) GB__FN1(GB_TRACE_FN_SHAPE, (v), 0)
#define gb_val_pow(a, b) GB__FN2(GB_TRACE_FN_POW, (a), (b), 0)
#define gb_val_log_softmax(v, dim) GB__FN1(GB_TRACE_FN_LOG_SOFTMAX, (v), 1, {(dim)})
/* The 2-norm over one dim (torch's x.norm(dim=d, keepdim=k)), or of all
 * elements; gb_val_norm_p: the norm of order p (torch.norm(x, p, dim, k),
 * torch.linalg.vector_norm: any p > 0, INFINITY, -INFINITY, 0), see gb_norm. */
#define gb_val_norm(v, dim, keepdim) GB__FN1(GB_TRACE_FN_NORM, (v), 1, {(dim)}, (keepdim), 2)
#define gb_val_norm_p(v, p, dim, keepdim) GB__FN1(GB_TRACE_FN_NORM, (v), 1, {(dim)}, (keepdim), (p))
#define gb_val_norm_all(v) GB__FN1(GB_TRACE_FN_NORM, (v), 0, {0}, false, 2)
/* torch.topk(v, k, dim): a tuple (values, indices); pick with gb_val_index(t, "[0]") / "[1]". */
#define gb_val_topk(v, k, dim) GB__FN1(GB_TRACE_FN_TOPK, (v), 2, {(k), (dim)})
#define gb_val_transpose(v, d0, d1) GB__FN1(GB_TRACE_FN_TRANSPOSE, (v), 2, {(d0), (d1)})
#define gb_val_unsqueeze(v, dim) GB__FN1(GB_TRACE_FN_UNSQUEEZE, (v), 1, {(dim)})
#define gb_val_squeeze(v, dim) GB__FN1(GB_TRACE_FN_SQUEEZE, (v), 1, {(dim)})
#define gb_val_squeeze_all(v) GB__FN1(GB_TRACE_FN_SQUEEZE, (v), 0)
/* Shapes and dim lists as (int64_t[]){...} arrays of n entries: reshape and
 * view take one -1; permute takes every dim; sum_dims and mean_dims reduce
 * over several dims (n = 0: all). */
#define gb_val_reshape(v, n, ...) gb_val_ints_at(GB_TRACE_FN_RESHAPE, (v), (n), (__VA_ARGS__), false, __FILE__, __LINE__)
#define gb_val_view(v, n, ...) gb_val_ints_at(GB_TRACE_FN_VIEW, (v), (n), (__VA_ARGS__), false, __FILE__, __LINE__)
#define gb_val_permute(v, n, ...) gb_val_ints_at(GB_TRACE_FN_PERMUTE, (v), (n), (__VA_ARGS__), false, __FILE__, __LINE__)
#define gb_val_sum_dims(v, keepdim, n, ...) gb_val_ints_at(GB_TRACE_FN_SUM, (v), (n), (__VA_ARGS__), (keepdim), __FILE__, __LINE__)
#define gb_val_mean_dims(v, keepdim, n, ...) gb_val_ints_at(GB_TRACE_FN_MEAN, (v), (n), (__VA_ARGS__), (keepdim), __FILE__, __LINE__)
/* torch.cat / torch.stack of n values (an array of handles) along dim. */
#define gb_val_cat(n, vals, dim) gb_val_fn_at(GB_TRACE_FN_CAT, (n), (vals), &(gb_fn_params){1, {(dim)}, false, 0}, __FILE__, __LINE__)
#define gb_val_stack(n, vals, dim) gb_val_fn_at(GB_TRACE_FN_STACK, (n), (vals), &(gb_fn_params){1, {(dim)}, false, 0}, __FILE__, __LINE__)
/* a == b, a != b, a < b, a <= b, a > b, a >= b: bool values. */
#define gb_val_eq(a, b) GB__FN2(GB_TRACE_FN_EQ, (a), (b), 0)
#define gb_val_ne(a, b) GB__FN2(GB_TRACE_FN_NE, (a), (b), 0)
#define gb_val_lt(a, b) GB__FN2(GB_TRACE_FN_LT, (a), (b), 0)
#define gb_val_le(a, b) GB__FN2(GB_TRACE_FN_LE, (a), (b), 0)
#define gb_val_gt(a, b) GB__FN2(GB_TRACE_FN_GT, (a), (b), 0)
#define gb_val_ge(a, b) GB__FN2(GB_TRACE_FN_GE, (a), (b), 0)
/* torch.where(cond, a, b). */
#define gb_val_where(cond, a, b) gb_val_fn_at(GB_TRACE_FN_WHERE, 3, (gb_val *[]){(cond), (a), (b)}, &(gb_fn_params){0}, __FILE__, __LINE__)
/* F.cross_entropy(logits [N, C] or [C], targets [N] or [], int64): the mean;
 * targets of -100 do not count. */
#define gb_val_cross_entropy(logits, targets) GB__FN2(GB_TRACE_FN_CROSS_ENTROPY, (logits), (targets), 0)
/* F.cosine_similarity(a, b, dim, eps=1e-8). */
#define gb_val_cosine_similarity(a, b, dim) GB__FN2(GB_TRACE_FN_COSINE_SIMILARITY, (a), (b), 1, {(dim)}, false, 1e-8)

/* nnsight's module call on a value: the module at path (of the trace's
 * model, or of an execution's instance of it) run on v, e.g. the logit lens
 * gb_call(tr, "lm_head", gb_call(tr, "transformer.ln_f", h)). The call
 * fires no hook events (getters of the module do not see it, and it does
 * not count as one of its calls); gradients flow through it. A module that
 * returns a tuple gives a tuple value. gb_call_n passes several values as
 * the module's inputs. */
#define gb_call(tr, path, v) gb_call_at((tr), (path), 1, (gb_val *[]){(v)}, __FILE__, __LINE__)
#define gb_call_n(tr, path, nargs, args) gb_call_at((tr), (path), (nargs), (args), __FILE__, __LINE__)
/* nnsight's hook=True: the call runs through the run's events, as the
 * module's next call (its getters of that call index and its edits see
 * it). Refused during generation with a KV cache and downstream of a
 * getter of every call. */
#define gb_call_hooked(tr, path, v) gb_call_hooked_at((tr), (path), 1, (gb_val *[]){(v)}, true, __FILE__, __LINE__)

/* A tensor constant (the trace takes a new reference) and a scalar. */
#define gb_const(tr, t) gb_const_at((tr), (t), __FILE__, __LINE__)
#define gb_scalar(tr, x) gb_scalar_at((tr), (x), __FILE__, __LINE__)
/* A tensor from outside (a steering vector, a direction) as a constant
 * that statements name: after gb_trace_tensor(tr, "steer", t), the
 * statement "transformer.h[6].output[0][:] += steer" reads it. The trace
 * takes a new reference; a name bound again refers to the new value from
 * then on. */
#define gb_trace_tensor(tr, name, t) gb_trace_tensor_at((tr), (name), (t), __FILE__, __LINE__)
/* An int64 scalar (Python's int: argmax - 432 stays int64). */
#define gb_scalar_i64(tr, x) gb_scalar_i64_at((tr), (x), __FILE__, __LINE__)

/* nnsight's apply: run fn on the live values of args; its result (a new
 * reference, or NULL with an error set) becomes a value of the graph. Not
 * run during scan (its result has no known shape there). */
typedef gb_tensor *(*gb_apply_fn)(gb_tensor *const *args, int nargs, void *ctx);
#define gb_apply(tr, fn, ctx, nargs, args) gb_apply_at((tr), (fn), (ctx), (nargs), (args), __FILE__, __LINE__)

/* ---- actions ------------------------------------------------------------ */

/* Keep v's value after the run; returns v. */
gb_val *gb_save(gb_val *v);
/* Replace a module's input/output (or a tuple element of it, or a gradient)
 * with value. */
#define gb_set(target, value) gb_set_at((target), (value), __FILE__, __LINE__)
/* target[expr] = value, in place, value broadcasting. */
#define gb_set_index(target, expr, value) gb_set_index_at((target), (expr), (value), __FILE__, __LINE__)
/* Print "label value" when the value exists (to gb_trace_set_log's file). */
#define gb_trace_log(label, v) gb_trace_log_at((label), (v), __FILE__, __LINE__)
/* Python's print(...) of strings and values when the values exist:
 * format holds "{}" for each of the nargs values in order ("{{" and "}}"
 * for braces), e.g. nnsight's tracer.log("Random Integer ", r, " is Odd")
 * is gb_trace_print(tr, "Random Integer  {}  is Odd", 1, &r). A value that
 * is a Python number in nnsight (a statement's literal, or arithmetic and
 * comparisons of literals only) prints as Python prints it (8, 0.5, True);
 * other values as tensors (tensor([-5])). */
#define gb_trace_print(tr, format, nargs, args) gb_trace_print_at((tr), (format), (nargs), (args), __FILE__, __LINE__)
/* End the forward pass right after v's module event. */
#define gb_stop(v) gb_stop_at((v), __FILE__, __LINE__)
/* Do not run the module at path; use value as its output. */
#define gb_skip(tr, path, value) gb_skip_at((tr), (path), (value), __FILE__, __LINE__)
/* requires_grad = True on v's tensor when it exists (as in the walkthrough). */
#define gb_requires_grad(v) gb_requires_grad_at((v), __FILE__, __LINE__)
/* Backpropagate from v (one element) when it exists. */
#define gb_val_backward(v) gb_val_backward_at((v), __FILE__, __LINE__)

/* Conditions: nodes defined between gb_if and gb_end_if run only if cond's
 * value (one element) is nonzero. Nestable. */
#define gb_if(tr, cond) gb_if_at((tr), (cond), __FILE__, __LINE__)
void gb_end_if(gb_trace *tr);

/* ---- statements --------------------------------------------------------- */

/* Define interventions from one statement in nnsight's Python syntax; it
 * builds the same nodes as the C calls above:
 *
 *   transformer.h[-1].mlp.output[:, -1, :] = 0          gb_set_index
 *   h = transformer.h[5].output[0]                      a name for later statements
 *   transformer.h[6].output[0][:] = h * 2               gb_set_index of a product
 *   logits = lm_head.output[:, -1].softmax(-1).save()   gb_save
 *   model.layer1.output.grad[:] = 0                     "model." is optional
 *   transformer.h[3].skip(transformer.h[2].output[0])   gb_skip
 *   lm_head.next().output[0, -1].argmax(-1).save()      gb_output_call(tr, "lm_head", 1): generation step 1
 *   model.layers[0].all().output[0][:] = 0             gb_output_all: at every step
 *   log("layer 1", layer1.output)                       gb_trace_log (also print)
 *   tracer.log("Random Integer ", r, " is Odd")         gb_trace_print: strings and values, as print
 *   r = torch.randint(low=-10, high=10, size=(1,))      gb_val_randint (gb_trace_set_seed)
 *
 *   lens = lm_head(transformer.ln_f(h)).save()          gb_call: a module on a value (hook=True: gb_call_hooked)
 *   top = lm_head.output[0, -1].softmax(-1).topk(5)     gb_val_topk (top.values, top.indices)
 *   w = transformer.h[0].attn.attn_weights              gb_point
 *
 * Values: module .output/.input (h[-1] indexes a ModuleList; each .next()
 * before them moves to the next call, i.e. generation step), a module's
 * named points (attn_weights, attn_scores), a module called on values
 * (lm_head(h)), names (bound by statements or gb_trace_tensor), numbers
 * (2 is int64, 2.0 float32), + - * / // % @ (Python's precedence and %),
 * one comparison (== != < <= > >=),
 * unary minus, parentheses, [index] in the string form, .grad, .values and
 * .indices (topk's), the methods save, clone, sum, mean, max, argmax,
 * softmax (dim, keepdim by position or name; sum() and mean() reduce
 * everything, a tuple of dims several), the functions of GB_TRACE_FN_LIST
 * as methods (x.exp(), x.topk(5, dim=-1), x.reshape(2, -1), x.float(), ...),
 * torch.NAME / F.NAME / torch.nn.functional.NAME calls (cat, stack, where,
 * cross_entropy, cosine_similarity, and any method with its value first),
 * stop, backward, requires_grad_. A call of any other function
 * (my_fn(x), torch.save_to(x)) is a syntax error naming it as outside
 * "the function whitelist", as nnsight's remote backend says: statements
 * are what a server runs, and nothing else.
 *
 * Conditions and blocks (nnsight 0.3's tracer.cond, 0.4's Python if): text
 * may hold several lines, a block of Python, with # comments and blank
 * lines; each line is a statement, or a header ending in ':' followed by
 * an indented body (or a one-line body after the ':'):
 *
 *   with tracer.cond(h.sum() > 0):           gb_if(tr, cond) ... gb_end_if
 *       transformer.h[1].output[0][:] = 0
 *   if logits.argmax(-1) == 481:             Python's if, elif, else:
 *       x = h * 2                            each branch runs under the
 *   elif h.mean() < 0: x = h                 negations of the conditions
 *   else:                                    before it, nested as written
 *       x = h
 *
 * A condition is one element, true when nonzero (.item() semantics). The
 * first line's indentation is the block's; mixing tabs and spaces counts
 * a tab to the next multiple of 8, as Python. Blocks nest up to 200 levels.
 *
 * site and line name the statement in errors ("site:line: ..." where line
 * is the statement's plus the index of the failing line in text, with the
 * column and that line quoted; site must outlive the trace). A run's error
 * in a node a statement defined reads "site:line:column: ..." (the column
 * of the step, operator or function in its line). A syntax
 * error anywhere in text defines nothing and is returned at once; other
 * definition errors (an unknown module) poison the trace as with the C
 * calls, and are returned too. *out, if not NULL, receives the value of
 * text's last statement (an assignment's right-hand side's node for
 * names, the set node otherwise). */
gb_status gb_trace_statement(gb_trace *tr, const char *text, const char *site, int line, gb_val **out);
/* The name a statement binds ("top = lm_head.output.save()" binds top;
 * "x[0] = 1" and "a == b" bind none), malloc'd; NULL when it binds none
 * (or out of memory). For printing and naming saved values as nnsight does. */
char *gb_statement_name(const char *text);
/* The names the lines of a statement bind (a multi-line one's, in blocks
 * and one-line bodies too), each once, in the order of their first
 * binding: a malloc'd array of *n malloc'd strings (free each and the
 * array); NULL with *n = 0 when out of memory. */
char **gb_statement_names(const char *text, int *n);

/* A name that no statement of tr bound (a module path otherwise) is asked
 * of resolve, which returns a value of tr for it (bound to the name from
 * then on) or NULL. It may be asked while a statement is only checked for
 * syntax, so it must give the same answer every time. Sessions use it for
 * names bound in their earlier traces. */
void gb_trace_set_resolver(gb_trace *tr, gb_val *(*resolve)(gb_trace *tr, const char *name, void *ctx), void *ctx);
/* The value a statement of tr bound to name, or NULL (the resolver is not
 * asked). */
gb_val *gb_trace_name(gb_trace *tr, const char *name);
/* The trace v is a node of. */
gb_trace *gb_val_trace(const gb_val *v);

/* ---- results ------------------------------------------------------------ */

/* The value of a saved node after the run (for a tuple, its element 0);
 * NULL with GB_ERR_STATE when it was not saved or never produced. */
gb_tensor *gb_value(const gb_val *v);
/* Element i of a saved tuple value. */
gb_tensor *gb_value_at(const gb_val *v, int i);
/* Shape of v as seen by the last scan or run. */
gb_status gb_val_shape(const gb_val *v, int *ndim, int64_t *shape);
/* Whether gb_save marked v (its value is kept after the run). */
bool gb_val_saved(const gb_val *v);
/* A readable expression for v, e.g. "layer1.output[:, 10]" (owned by the trace). */
const char *gb_val_text(gb_val *v);

/* ---- executions: one graph, several runs -------------------------------- */

/* A trace is a graph, what the definitions above build, and the state of
 * its runs, kept apart: the graph is plain data that runs only read, and an
 * execution holds everything a run writes (each node's value and state,
 * the events being handled, armed gradients, the batched input).
 * gb_trace_run, gb_value and the other calls above use the trace's own
 * execution (gb_trace_exec); gb_exec_new makes more, so that one graph can
 * run several times at once:
 *
 *     gb_trace *tr = gb_trace_new(model, input);
 *     gb_val *y = gb_save(gb_output(tr, "layer2"));
 *     gb_exec *ex = gb_exec_new(tr, NULL);           // or on another instance of the model
 *     if (ex && gb_exec_run(ex, NULL) == GB_OK) {    // NULL: the trace's input
 *         gb_tensor *t = gb_exec_value(ex, y);       // borrowed until gb_exec_free
 *     }
 *     gb_exec_free(ex);
 *     gb_trace_free(tr);
 *
 * Threads. Only definitions write the graph (and the first run or
 * gb_exec_new after them, which derives its tables once). So: define,
 * make the executions (gb_exec_new, on one thread at a time), then run
 * them in as many threads, on the one model or on instances of it; the
 * trace's own execution counts as one of them. Traces of their own, each
 * defined and run by one thread, may also share one model
 * (tests/test_threads.c). An execution is made for the graph as
 * it is: after further definitions, or a change of the trace's edits, it
 * refuses to run. A graph validated once (gb_trace_scan) need not be
 * scanned by each execution. */
typedef struct gb_exec gb_exec;

/* An execution of tr's graph on model, a module tree shaped as the trace's
 * (NULL: the trace's model); getters find their modules in it by path. It
 * takes its own copies of the graph's constants and of the trace's input
 * (or its invokes, batched). NULL with an error when a module path names
 * nothing in model or the invokes cannot be batched. */
gb_exec *gb_exec_new(gb_trace *tr, gb_module *model);
/* Frees an execution of gb_exec_new (the trace's own goes with the trace). */
void gb_exec_free(gb_exec *ex);
/* The trace's own execution (borrowed): gb_trace_run's and gb_value's. */
gb_exec *gb_trace_exec(gb_trace *tr);
/* The attention mask and position ids that go with an input given to
 * gb_exec_run, _scan, _generate or _begin (the execution takes references). */
void gb_exec_set_attention_mask(gb_exec *ex, gb_tensor *mask);
void gb_exec_set_position_ids(gb_exec *ex, gb_tensor *pos);
/* Cancellation inside a forward pass: from the next run on, cancelled(ctx)
 * is asked after every module of a pass returns (scans are not asked), and
 * when it says true the pass ends there, as a failing module ends it, with
 * GB_ERR_STATE "exec: cancelled after MODULE (call K)"; the run frees what
 * it made as after any error, and the execution runs again. Asking costs
 * an output event per module call; NULL (the default) asks nothing and
 * costs nothing. */
void gb_exec_set_cancel(gb_exec *ex, bool (*cancelled)(void *ctx), void *ctx);
/* gb_trace_run and gb_trace_scan in this execution (gb_exec_generate, in
 * lm/lm.h, generates in it), on
 * input (with gb_exec_set_*'s mask and positions) or, when input is NULL,
 * on the trace's input, mask and positions or its invokes. A trace with
 * invokes takes no other input. gb_exec_run does not scan first. */
gb_status gb_exec_run(gb_exec *ex, gb_tensor *input);
gb_status gb_exec_scan(gb_exec *ex, gb_tensor *input);
/* gb_value, gb_value_at, gb_val_shape and gb_trace_generated of this
 * execution (v may also be a node of the trace's editor); same errors. */
gb_tensor *gb_exec_value(const gb_exec *ex, const gb_val *v);
gb_tensor *gb_exec_value_at(const gb_exec *ex, const gb_val *v, int i);
gb_status gb_exec_shape(const gb_exec *ex, const gb_val *v, int *ndim, int64_t *shape);
gb_tensor *gb_exec_generated(const gb_exec *ex);
/* The saved values that the last run of ex did not produce (for the
 * trace's own run, ex = gb_trace_exec(tr)): the run stopped before them,
 * their module was not called that often (a .next() beyond the steps a
 * generation made, which stop tokens may end early), or a condition was
 * false. Returns how many, and puts the first max of them, in definition
 * order, in vals when it is not NULL; gb_exec_value fails on each. Every
 * saved value counts before the first run. */
int gb_exec_unproduced(const gb_exec *ex, gb_val **vals, int max);
/* Values that exist only when an execution runs (a value of an earlier
 * trace of a session, an iteration's item): the constant node c (made by
 * gb_const) holds t in ex's runs from now on instead of the graph's tensor
 * (ex takes a reference; NULL goes back to the graph's). Shape-only (meta)
 * tensors serve a scan. */
gb_status gb_exec_bind(gb_exec *ex, gb_val *c, gb_tensor *t);
/* What a saved node holds in ex after its last run or scan: like
 * gb_exec_value, but a scan's shape-only tensor too (to scan a later
 * trace on it). */
gb_tensor *gb_exec_held(const gb_exec *ex, const gb_val *v);

/* Stepping: one run made of several forward passes, as a decoding loop
 * drives it. The passes share one gb_run (call counters, and a KV cache
 * when kv_cache is set), so module call k happens in pass k: getters of
 * call k (nnsight's .next()) fire then, getters of every call at each.
 *
 * gb_exec_begin starts the run on an input chosen as by gb_exec_run (read
 * back, batched, with gb_exec_batch: borrowed, NULL when absent) and runs
 * the nodes that need no model value. gb_exec_pass runs the model once on
 * ids with mask and positions (NULL: none) while the interventions fire,
 * and moves the model's outputs into *out (which must be empty; NULL drops
 * them). It returns GB_STOPPED when a gb_stop ended the pass (the run is
 * over: later passes return GB_STOPPED without running), or the run's first
 * error. gb_exec_end finishes the run: GB_OK, also after a stop, or the
 * first error. gb_trace_run is begin, one pass, end; gb_trace_generate is
 * begin with a cache, a pass for the prompt and one per new token, end. */
gb_status gb_exec_begin(gb_exec *ex, gb_tensor *input, bool kv_cache);
/* gb_exec_begin for a scan: passes run on shapes only (a scan of a
 * generation, pass by pass). */
gb_status gb_exec_begin_scan(gb_exec *ex, gb_tensor *input, bool kv_cache);
void gb_exec_batch(const gb_exec *ex, gb_tensor **ids, gb_tensor **mask, gb_tensor **pos);
gb_status gb_exec_pass(gb_exec *ex, gb_tensor *ids, gb_tensor *mask, gb_tensor *pos, gb_values *out);
gb_status gb_exec_end(gb_exec *ex);

/* For a decoding loop driving an execution (lm/): the execution's trace,
 * the trace's stop tokens, pad id and validation setting, and where the
 * loop leaves its ids (the execution takes the reference; read back with
 * gb_exec_generated). */
gb_trace *gb_exec_trace(const gb_exec *ex);
/* The model a trace was made for (borrowed). */
gb_module *gb_trace_module(const gb_trace *tr);
void gb_trace_stop_tokens(const gb_trace *tr, bool (**is_stop)(int64_t id, void *ctx), void **ctx);
int64_t gb_trace_pad_id(const gb_trace *tr);
bool gb_trace_validates(const gb_trace *tr);
void gb_exec_set_generated(gb_exec *ex, gb_tensor *ids);

/* ---- the functions behind the macros ------------------------------------ */

/* Every op, with the payload its nodes carry (trace/trace_impl.h). */
#define GB_TRACE_OP_LIST(X)                                   \
    X(GB_TRACE_OP_OUTPUT, "output", GETTER)                   \
    X(GB_TRACE_OP_INPUT, "input", GETTER)                     \
    X(GB_TRACE_OP_POINT, "point", GETTER)                     \
    X(GB_TRACE_OP_GRAD, "grad", NONE)                         \
    X(GB_TRACE_OP_CONST, "const", CONST)                      \
    X(GB_TRACE_OP_INDEX, "index", INDEX)                      \
    X(GB_TRACE_OP_ADD, "add", NONE)                           \
    X(GB_TRACE_OP_SUB, "sub", NONE)                           \
    X(GB_TRACE_OP_MUL, "mul", NONE)                           \
    X(GB_TRACE_OP_DIV, "div", NONE)                           \
    X(GB_TRACE_OP_MATMUL, "matmul", NONE)                     \
    X(GB_TRACE_OP_REMAINDER, "remainder", NONE)               \
    X(GB_TRACE_OP_FLOOR_DIVIDE, "floor_divide", NONE)         \
    X(GB_TRACE_OP_SUM, "sum", DIM)                            \
    X(GB_TRACE_OP_MEAN, "mean", DIM)                          \
    X(GB_TRACE_OP_MAX, "max", DIM)                            \
    X(GB_TRACE_OP_ARGMAX, "argmax", DIM)                      \
    X(GB_TRACE_OP_SUM_ALL, "sum_all", NONE)                   \
    X(GB_TRACE_OP_SOFTMAX, "softmax", DIM)                    \
    X(GB_TRACE_OP_CLONE, "clone", NONE)                       \
    X(GB_TRACE_OP_FN, "fn", FN)                               \
    X(GB_TRACE_OP_CALL, "call", GETTER)                       \
    X(GB_TRACE_OP_APPLY, "apply", APPLY)                      \
    X(GB_TRACE_OP_SET, "set", NONE)                           \
    X(GB_TRACE_OP_SET_INDEX, "set_index", INDEX)              \
    X(GB_TRACE_OP_LOG, "log", NONE)                           \
    X(GB_TRACE_OP_STOP, "stop", NONE)                         \
    X(GB_TRACE_OP_SKIP, "skip", GETTER)                       \
    X(GB_TRACE_OP_REQUIRES_GRAD, "requires_grad", NONE)       \
    X(GB_TRACE_OP_BACKWARD, "backward", NONE)                 \
    X(GB_TRACE_OP_IF, "if", NONE)

typedef enum gb_trace_op {
#define GB__X(e, n, payload) e,
    GB_TRACE_OP_LIST(GB__X)
#undef GB__X
    GB_TRACE_OP_COUNT
} gb_trace_op;

/* The functions of gb_val_fn_at: value, name (PyTorch's, also the
 * statement method), number of value arguments (-1: a list of 1 to 8). */
#define GB_TRACE_FN_LIST(X)                                              \
    X(GB_TRACE_FN_EXP, "exp", 1)                                         \
    X(GB_TRACE_FN_LOG, "log", 1)                                         \
    X(GB_TRACE_FN_ABS, "abs", 1)                                         \
    X(GB_TRACE_FN_SQRT, "sqrt", 1)                                       \
    X(GB_TRACE_FN_FLOAT, "float", 1)                                     \
    X(GB_TRACE_FN_LONG, "long", 1)                                       \
    X(GB_TRACE_FN_ITEM, "item", 1)                                       \
    X(GB_TRACE_FN_SHAPE, "shape", 1)     /* int64 [ndim]; real in a scan */ \
    X(GB_TRACE_FN_POW, "pow", 2)                                         \
    X(GB_TRACE_FN_LOG_SOFTMAX, "log_softmax", 1) /* i[0] dim */          \
    X(GB_TRACE_FN_NORM, "norm", 1)       /* n dims (0: all), keepdim, x p */ \
    X(GB_TRACE_FN_SUM, "sum", 1)         /* n dims (0: all), keepdim */  \
    X(GB_TRACE_FN_MEAN, "mean", 1)       /* n dims (0: all), keepdim */  \
    X(GB_TRACE_FN_TOPK, "topk", 1)       /* k, dim: (values, indices) */ \
    X(GB_TRACE_FN_RESHAPE, "reshape", 1) /* the shape */                 \
    X(GB_TRACE_FN_VIEW, "view", 1)       /* the shape */                 \
    X(GB_TRACE_FN_TRANSPOSE, "transpose", 1) /* two dims */              \
    X(GB_TRACE_FN_PERMUTE, "permute", 1) /* every dim */                 \
    X(GB_TRACE_FN_UNSQUEEZE, "unsqueeze", 1) /* dim */                   \
    X(GB_TRACE_FN_SQUEEZE, "squeeze", 1) /* dim, or none: all of size 1 */ \
    X(GB_TRACE_FN_CAT, "cat", -1)        /* dim */                       \
    X(GB_TRACE_FN_STACK, "stack", -1)    /* dim */                       \
    X(GB_TRACE_FN_EQ, "eq", 2)                                           \
    X(GB_TRACE_FN_NE, "ne", 2)                                           \
    X(GB_TRACE_FN_LT, "lt", 2)                                           \
    X(GB_TRACE_FN_LE, "le", 2)                                           \
    X(GB_TRACE_FN_GT, "gt", 2)                                           \
    X(GB_TRACE_FN_GE, "ge", 2)                                           \
    X(GB_TRACE_FN_WHERE, "where", 3)                                     \
    X(GB_TRACE_FN_CROSS_ENTROPY, "cross_entropy", 2)                     \
    X(GB_TRACE_FN_COSINE_SIMILARITY, "cosine_similarity", 2) /* dim; x eps */ \
    X(GB_TRACE_FN_RANDINT, "randint", 0) /* low, high, the size */

typedef enum gb_trace_fn {
#define GB__X(e, n, nargs) e,
    GB_TRACE_FN_LIST(GB__X)
#undef GB__X
    GB_TRACE_FN_COUNT
} gb_trace_fn;

/* A function's integer parameters (dims, a shape, k), keepdim, and a float
 * (cosine_similarity's eps). */
typedef struct gb_fn_params {
    int n;
    int64_t i[GB_MAX_DIMS];
    bool keepdim;
    double x;
} gb_fn_params;
#define GB__FN1(fn, v, ...) gb_val_fn_at((fn), 1, (gb_val *[]){(v)}, &(gb_fn_params){__VA_ARGS__}, __FILE__, __LINE__)
#define GB__FN2(fn, a, b, ...) gb_val_fn_at((fn), 2, (gb_val *[]){(a), (b)}, &(gb_fn_params){__VA_ARGS__}, __FILE__, __LINE__)
/* The name of a function ("exp"), and its function by name (GB_TRACE_FN_COUNT if none). */
const char *gb_trace_fn_name(gb_trace_fn fn);
gb_trace_fn gb_trace_fn_find(const char *name, size_t len);
gb_val *gb_val_fn_at(gb_trace_fn fn, int nargs, gb_val *const *args, const gb_fn_params *p, const char *file, int line);
gb_val *gb_val_ints_at(gb_trace_fn fn, gb_val *v, int n, const int64_t *ints, bool keepdim, const char *file, int line);
gb_val *gb_call_at(gb_trace *tr, const char *path, int nargs, gb_val *const *args, const char *file, int line);
gb_val *gb_randint_at(gb_trace *tr, int64_t low, int64_t high, int ndim, const int64_t *size, const char *file, int line);
gb_val *gb_call_hooked_at(gb_trace *tr, const char *path, int nargs, gb_val *const *args, bool hook, const char *file,
                          int line);

/* kind: 0 output, 1 input, 2 point */
/* op: GB_TRACE_OP_OUTPUT, _INPUT or _POINT. */
gb_val *gb_getter_at(gb_trace *tr, const char *path, gb_trace_op op, int call, const char *file, int line);
gb_val *gb_grad_at(gb_val *v, const char *file, int line);
gb_val *gb_val_index_at(gb_val *v, const char *expr, const char *file, int line);
gb_val *gb_val_binary_at(gb_trace_op op, gb_val *a, gb_val *b, const char *file, int line);
gb_val *gb_val_reduce_at(gb_trace_op op, gb_val *v, int dim, bool keepdim, const char *file, int line);
gb_val *gb_val_unary_at(gb_trace_op op, gb_val *v, int dim, const char *file, int line);
gb_val *gb_const_at(gb_trace *tr, gb_tensor *t, const char *file, int line);
gb_val *gb_scalar_at(gb_trace *tr, float x, const char *file, int line);
gb_val *gb_scalar_i64_at(gb_trace *tr, int64_t x, const char *file, int line);
gb_val *gb_trace_tensor_at(gb_trace *tr, const char *name, gb_tensor *t, const char *file, int line);
gb_val *gb_apply_at(gb_trace *tr, gb_apply_fn fn, void *ctx, int nargs, gb_val *const *args, const char *file,
                    int line);
gb_val *gb_set_at(gb_val *target, gb_val *value, const char *file, int line);
gb_val *gb_set_index_at(gb_val *target, const char *expr, gb_val *value, const char *file, int line);
gb_val *gb_trace_log_at(const char *label, gb_val *v, const char *file, int line);
gb_val *gb_trace_print_at(gb_trace *tr, const char *format, int nargs, gb_val *const *args, const char *file, int line);
gb_val *gb_stop_at(gb_val *v, const char *file, int line);
gb_val *gb_skip_at(gb_trace *tr, const char *path, gb_val *value, const char *file, int line);
gb_val *gb_requires_grad_at(gb_val *v, const char *file, int line);
gb_val *gb_val_backward_at(gb_val *v, const char *file, int line);
gb_val *gb_if_at(gb_trace *tr, gb_val *cond, const char *file, int line);
gb_status gb_invoke_at(gb_trace *tr, gb_tensor *ids, const char *file, int line);

#ifdef __cplusplus
}
#endif

#endif
