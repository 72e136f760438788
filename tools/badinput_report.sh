#!/bin/sh
# Issue 13's bad inputs (its lists 2-4, and traced generation's sizes), each
# run through the CLI as a user would: the exit status, the first line it
# prints on stderr, wall time and peak resident memory (/usr/bin/time).
# Prints a Markdown table. Not a test (timings vary with the machine's
# load); the behaviour itself is tested in tests/test_bad_input.c and the
# suites it names.
#
#     sh tools/badinput_report.sh [build/glassbox]
#
# Fixtures are made in a temporary directory from the bundled model (and a
# Llama-3-8B-shaped bf16 checkpoint written as a sparse file: 16 GB of
# weights that take no disk space and that `info` must not read).
set -u
cd "$(dirname "$0")/.." || exit 1
GB=${1:-build/glassbox}
MODEL=models/gpt2-facts
[ -x "$GB" ] || { echo "$GB: not built (make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
T=$(mktemp -d /tmp/gb-badinput-XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT

# A copy of the bundled model with config.json edited by a Python expression on c.
variant() { # NAME EXPR
    mkdir -p "$T/$1" && cp "$MODEL"/* "$T/$1"/ &&
        /usr/bin/python3 -c "import json,sys; p=sys.argv[1]+'/config.json'; c=json.load(open(p)); $2; json.dump(c, open(p,'w'))" "$T/$1"
}
variant layers "c['n_layer'] = 1000000000"
variant eps "c['layer_norm_epsilon'] = -1"
variant eos "c['eos_token_id'] = 5000"
variant bos "c['bos_token_id'] = -3"
# NaN in the final norm's weight (every logit NaN)
variant nan "pass"
/usr/bin/python3 - "$T/nan/model.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
lo, hi = h['transformer.ln_f.weight']['data_offsets']
b[8 + n + lo:8 + n + hi] = struct.pack('<f', float('nan')) * ((hi - lo) // 4)
open(p, 'wb').write(b)
EOF
# a tokenizer with one sparse id
mkdir -p "$T/sparse" && /usr/bin/python3 - "$MODEL/tokenizer.json" "$T/sparse/tokenizer.json" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))
t['model']['vocab']['zzz'] = 1500000000
json.dump(t, open(sys.argv[2], 'w'))
EOF
# Llama-3-8B's shapes in bf16, one sparse file (no weight is ever read by info)
mkdir -p "$T/llama8b" && /usr/bin/python3 - "$T/llama8b" <<'EOF'
import json, os, sys
d = sys.argv[1]
H, I, V, L, KV = 4096, 14336, 128256, 32, 1024
shapes = {'model.embed_tokens.weight': [V, H], 'model.norm.weight': [H], 'lm_head.weight': [V, H]}
for l in range(L):
    p = 'model.layers.%d.' % l
    shapes.update({p + 'input_layernorm.weight': [H], p + 'post_attention_layernorm.weight': [H],
                   p + 'self_attn.q_proj.weight': [H, H], p + 'self_attn.k_proj.weight': [KV, H],
                   p + 'self_attn.v_proj.weight': [KV, H], p + 'self_attn.o_proj.weight': [H, H],
                   p + 'mlp.gate_proj.weight': [I, H], p + 'mlp.up_proj.weight': [I, H], p + 'mlp.down_proj.weight': [H, I]})
head, at = {}, 0
for name, s in shapes.items():
    n = 2
    for x in s: n *= x
    head[name] = {'dtype': 'BF16', 'shape': s, 'data_offsets': [at, at + n]}
    at += n
text = json.dumps(head).encode()
text += b' ' * (-len(text) % 8)
with open(d + '/model.safetensors', 'wb') as f:
    f.write(len(text).to_bytes(8, 'little') + text)
    f.truncate(8 + len(text) + at)
json.dump({'model_type': 'llama', 'architectures': ['LlamaForCausalLM'], 'vocab_size': V, 'hidden_size': H,
           'intermediate_size': I, 'num_hidden_layers': L, 'num_attention_heads': 32, 'num_key_value_heads': 8,
           'max_position_embeddings': 8192, 'rms_norm_eps': 1e-5, 'rope_theta': 500000.0,
           'tie_word_embeddings': False, 'torch_dtype': 'bfloat16', 'bos_token_id': 128000, 'eos_token_id': 128001},
          open(d + '/config.json', 'w'))
EOF

MINUS=$(/usr/bin/python3 -c 'print("-" * 20000 + "1")')
PARENS=$(/usr/bin/python3 -c 'print("(" * 60000 + "1" + ")" * 60000)')
LONG=$(/usr/bin/python3 -c 'print(",".join(["5"] * 65))')

echo "| case | command | exit | stderr (first line) | wall s | peak RSS MB |"
echo "|---|---|---|---|---|---|"
row() { # CASE SHOWN-COMMAND COMMAND...
    name=$1 shown=$2
    shift 2
    /usr/bin/time -f '%e %M' -o "$T/time" "$@" > "$T/out" 2> "$T/err"
    rc=$?
    msg=$(grep -v '^x = \|^generator\.' "$T/err" | head -n 1 | cut -c1-220 | sed 's/|/\\|/g')
    set -- $(tail -n 1 "$T/time")
    printf '| %s | `%s` | %s | %s | %s | %.1f |\n' "$name" "$shown" "$rc" "$msg" "$1" "$(echo "$2 / 1024" | bc -l)"
}
# list 2: crashes
row "20,000 minus signs" "trace -e 'x = ----...1' (20,000)" "$GB" trace -p Hi -e "x = $MINUS"
row "60,000 nested parentheses" "trace -e 'x = ((...1...))' (60,000)" "$GB" trace -p Hi -e "x = $PARENS"
row "tokenizer.json with id 1500000000" "tokenize --tokenizer sparse/ 'The Eiffel'" "$GB" tokenize --tokenizer "$T/sparse" "The Eiffel"
# list 3: memory before checks
row "num_hidden_layers: 1000000000" "info layers/" "$GB" info "$T/layers"
row "Llama-3-8B-shaped bf16 (16 GB, sparse)" "info llama8b/" "$GB" info "$T/llama8b"
row "Llama-3-8B-shaped, ulimit -v 4 GB" "sh -c 'ulimit -v 4000000; info llama8b/'" sh -c "ulimit -v 4000000; exec $GB info $T/llama8b"
# list 4: silent wrong results
row "NaN weights: run" "run nan/ -p 'The Eiffel'" "$GB" run "$T/nan" -p "The Eiffel"
row "NaN weights: generate" "generate nan/ -p 'The Eiffel' -n 3" "$GB" generate "$T/nan" -p "The Eiffel" -n 3
row "NaN weights: --nan-check" "run nan/ -p 'The Eiffel' --nan-check" "$GB" run "$T/nan" -p "The Eiffel" --nan-check
row "layer_norm_epsilon: -1" "run eps/ -p 'The Eiffel'" "$GB" run "$T/eps" -p "The Eiffel"
row ".next() beyond the steps" "trace -n 2 -e 'x = lm_head.next().next().next().output.save()'" "$GB" trace -p "The Eiffel" -n 2 -e "x = lm_head.next().next().next().output.save()"
row "-n abc" "generate -n abc" "$GB" generate -p Hi -n abc
row "-n 5x" "generate -n 5x" "$GB" generate -p Hi -n 5x
row "-n 1e3" "generate -n 1e3" "$GB" generate -p Hi -n 1e3
row "huge -n" "generate -n 99999999999999999999" "$GB" generate -p Hi -n 99999999999999999999
row "trace -n -5" "trace -n -5" "$GB" trace -p Hi -n -5 -e "x = lm_head.output.save()"
row "prompt past positions: generate" "generate --ids 5,5,...(65)" "$GB" generate --ids "$LONG"
row "prompt past positions: trace -n 3" "trace --ids 5,5,...(65) -n 3" "$GB" trace --ids "$LONG" -n 3 -e "x = lm_head.output.save()"
row "generate --out" "generate -p Hi --out x.safetensors" "$GB" generate -p Hi --out "$T/x.safetensors"
row "generate --hidden" "generate -p Hi --hidden" "$GB" generate -p Hi --hidden
row "generate --scan" "generate -p Hi --scan" "$GB" generate -p Hi --scan
row "generate --graph" "generate -p Hi --graph" "$GB" generate -p Hi --graph
row "--ids twice" "run --ids 1,2 --ids 3" "$GB" run --ids 1,2 --ids 3
row "-p with --ids" "run -p Hi --ids 3" "$GB" run -p Hi --ids 3
row "eos_token_id outside the vocabulary" "info eos/" "$GB" info "$T/eos"
row "bos_token_id outside the vocabulary" "info bos/" "$GB" info "$T/bos"
# traced generation's sizes (the CLI keeps -n within the model's positions)
row "trace -n at the positions' limit, ulimit -v 1 GB" "sh -c 'ulimit -v 1000000; trace -p Hi -n 1000000'" sh -c "ulimit -v 1000000; exec $GB trace -p Hi -n 1000000 -e 'x = lm_head.all().output.save()'"
