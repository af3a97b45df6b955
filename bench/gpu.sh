#!/usr/bin/env bash
# qkv on one GPU in <= 8 minutes: every GPU measurement of issue 17 (item 6) in one prepared script, one report.
#
#   bash bench/gpu.sh [REPORT.md]          # on the GPU machine, from the source tree (PYTHONPATH=src is set here)
#   QKV_GPU_TINY=1 bash bench/gpu.sh /tmp/report.md    # the same steps, tiny sizes, on this CPU (~1 minute)
#
# The report is REPORT.md if given, else $OUT/gpu_report.md when $OUT is set (the device machine's folder that
# comes back), else bench/out/gpu_report.md. It is rewritten after every step, so a run cut short still leaves
# one. Logs and the training run go to $QKV_GPU_WORK (default: a new /tmp/qkv-gpu.XXXXXX).
#
# Steps, each under its own `timeout` (a failing or slow step is recorded with its error tail; the next runs):
#   0   versions: torch, CUDA, cuDNN, GPU, packages (+ nvidia-smi)
#   1a  bench/train_throughput.py, base preset, 256 x 32 x 32, vocab 10k, bf16, fused Adam: qkv, nn.Transformer,
#       Marian, eager (--no-compile); run only when compiling is off (QKV_GPU_COMPILE=0), since on CUDA the
#       implementations run one after the other anyway and 1b-1d measure each eager row too
#   1b-1d  one implementation each, eager + torch.compile (--compile-mode, default "default": max-autotune's
#       matmul search does not fit the budget); one process each so that one slow compile cannot take the
#       others' rows with it. The report merges their rows (and 1a's eager rows when 1a ran).
#   2   bench/attention.py: qkv fused vs raw SDPA (and the explicit path), bf16, Dh 64/128, T 1024/4096/8192
#   3   bench/decode.py: qkv greedy / beam 5 vs HF generate() on the same weights (random base model, KV cache)
#   4   qkv train De->En on Multi30k: gpu-de-en's recipe (bench/translation.py) for $QKV_GPU_TRAIN_MINUTES
#       (default 0.75) minutes, eager (compiling would take most of them), warm-up 300 (untuned), best by
#       validation loss (--no-bleu), then sacreBLEU of best/ and averaged/ on test_2016_flickr, beam 5
#   5   bench/complexity.py --device cuda: Table 1 measured on the GPU (the gradient-reach part is float64 on the
#       CPU, cut to 5 lengths x 2 draws)
#
# Budget (seconds, on one H200). Each number is the step's timeout, with the start-up of Python, torch, CUDA
# and transformers and the compile warm-ups inside it; "seen" is the wall time on an H200 (session 21, torch
# 2.11; docs/performance.md), where the first timeouts (estimates made before any GPU run) cut 1a-1c and 2
# short (">"); 1b, 2 and 4 are from the second call, after the fixes:
#   step                                        timeout   seen
#   0   versions (python, nvidia-smi)                 20        8
#   1a  throughput, eager, all three (compile off)    60      >40   (3 x 23 steps + start-up + matmul rate)
#   1b  throughput, qkv eager + compiled             150       73   (qkv's fwd+bwd compile: 49 s)
#   1c  throughput, nn.Transformer                    90      >70   (its compile: 50 s)
#   1d  throughput, Marian                            85       64   (its compile: 37 s)
#   2   attention vs SDPA (24 cases)                  70       53   (40 cases needed ~75 s)
#   3   decode vs HF generate()                       35       23
#   4   train De->En 0.75 min + test BLEU             95       77   (start-up + BPE 15, training 45, test 2 x 5;
#                                                                     timeout = 60 x minutes + 50)
#   5   complexity on the GPU                         40       30
#   total                                            480           = 8 minutes: the guard below, not the sum
# A global guard ($QKV_GPU_TOTAL, default 480 s) cuts a step's timeout to what is left of the total, so the
# script ends inside 8 minutes whatever a step does: the last steps are then cut or skipped, and say so.
#
# Environment (all optional):
#   QKV_DATA             data root holding multi30k/ (or the multi30k folder itself), the only place looked at
#                        when set; default: shared/data in the source tree, then ../shared/data beside it
#   QKV_GPU_TINY=1       tiny sizes on the CPU (the end-to-end test, tests/test_gpu_script.py); compile off,
#                        every timeout (and the total) 3x
#   QKV_GPU_DEVICE       cuda (default; cpu in tiny mode)
#   QKV_GPU_COMPILE      1/0: run steps 1b-1d (default 1; 0 in tiny mode: CPU compilation takes minutes)
#   QKV_GPU_COMPILE_MODE torch.compile mode for 1b-1d (default "default")
#   QKV_GPU_CURVE_STEPS  qkv's eager-vs-compiled loss curve in 1b (default 0: it costs a second compile)
#   QKV_GPU_TRAIN_MINUTES  training minutes of step 4 (default 0.75; its timeout follows)
#   QKV_GPU_TOTAL        the global budget in seconds (default 480)
#   QKV_GPU_STEPS        only these steps, comma-separated (e.g. "1b,4"; "1" = 1a-1d); default: all
#   QKV_PYTHON           the interpreter (default python3: on the GPU machine, the one that holds torch)
#
# Works with torch >= 2.4 (the GPU machine has 2.11) and bash >= 4.4.

{  # one compound command: bash reads it whole before running it, so editing this file mid-run breaks nothing
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 LC_COLLATE=C
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::FutureWarning}"
PY=${QKV_PYTHON:-python3}

TINY=${QKV_GPU_TINY:-0}
[[ $TINY == 0 || -z $TINY ]] && TINY=0 || TINY=1
if ((TINY)); then DEVICE=${QKV_GPU_DEVICE:-cpu}; COMPILE=${QKV_GPU_COMPILE:-0}
else DEVICE=${QKV_GPU_DEVICE:-cuda}; COMPILE=${QKV_GPU_COMPILE:-1}; fi
COMPILE_MODE=${QKV_GPU_COMPILE_MODE:-default}
CURVE_STEPS=${QKV_GPU_CURVE_STEPS:-0}
TRAIN_MINUTES=${QKV_GPU_TRAIN_MINUTES:-0.75}
TRAIN_TIMEOUT=$(awk -v m="$TRAIN_MINUTES" 'BEGIN { printf "%d", m * 60 + 50 }')
SCALE=$((TINY ? 3 : 1))  # tiny mode: 3x the timeouts (a loaded CPU is slow; its numbers mean nothing anyway)
TOTAL=${QKV_GPU_TOTAL:-$((480 * SCALE))}
STEPS=${QKV_GPU_STEPS:-}

if [[ $# -ge 1 ]]; then REPORT=$1
elif [[ -n ${OUT:-} ]]; then REPORT=$OUT/gpu_report.md
else REPORT=$ROOT/bench/out/gpu_report.md; fi
mkdir -p "$(dirname "$REPORT")" || exit 2
WORK=${QKV_GPU_WORK:-$(mktemp -d /tmp/qkv-gpu.XXXXXX)}
mkdir -p "$WORK/sections" || exit 2

now_ms() { date +%s%3N; }
T0=$(now_ms)
elapsed_s() { echo $((($(now_ms) - T0) / 1000)); }
seconds() { printf '%d.%01d' $(($1 / 1000)) $(($1 % 1000 / 100)); }  # ms -> "12.3"

# -- the data -----------------------------------------------------------------------------------------------
find_multi30k() {
  local root dir
  local roots=("$ROOT/shared/data" "$ROOT/../shared/data")
  [[ -n ${QKV_DATA:-} ]] && roots=("$QKV_DATA")  # an explicit QKV_DATA is the only place looked at
  for root in "${roots[@]}"; do
    for dir in "$root/multi30k" "$root"; do
      if compgen -G "$dir/train.de*" >/dev/null && compgen -G "$dir/test_2016_flickr.en*" >/dev/null; then
        (cd "$dir" && pwd); return 0
      fi
    done
  done
  return 1
}
MULTI30K=$(find_multi30k) || MULTI30K=""
if ((TINY)) && [[ -n $MULTI30K ]]; then  # a small slice: the CPU run must take seconds
  mkdir -p "$WORK/multi30k-tiny"
  for split in train val test_2016_flickr; do
    n=$([[ $split == train ]] && echo 400 || echo 16)
    for lang in de en; do
      f=$(compgen -G "$MULTI30K/$split.$lang*" | head -n 1)
      zcat -f "$f" | head -n "$n" >"$WORK/multi30k-tiny/$split.$lang"
    done
  done
  MULTI30K=$WORK/multi30k-tiny
fi

# -- the report ---------------------------------------------------------------------------------------------
STEP_ROWS=()
write_report() {
  {
    echo "# qkv on one GPU: bench/gpu.sh report"
    echo
    echo "- $(date -u '+%Y-%m-%d %H:%M:%S UTC'), host $(uname -n), $(nproc 2>/dev/null || echo "?") CPUs; mode: $( ((TINY)) && echo 'TINY (CPU test sizes: numbers mean nothing)' || echo full), device $DEVICE"
    echo "- source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git') in $ROOT; data: ${MULTI30K:-none found}; logs: $WORK"
    echo "- wall time so far: $(elapsed_s) s of the $TOTAL s budget"
    [[ -f $WORK/sections/00-header.md ]] && cat "$WORK/sections/00-header.md"
    echo
    echo "| step | what | status | wall s | timeout s |"
    echo "| --- | --- | --- | --- | --- |"
    printf '%s\n' "${STEP_ROWS[@]}"
    echo
    cat "$WORK"/sections/[1-9]*.md 2>/dev/null
  } >"$REPORT.tmp" && mv "$REPORT.tmp" "$REPORT"
}

# run_step ID TITLE TIMEOUT FORMAT COMMAND...   FORMAT: text (stdout in a code block), md (stdout as is),
# none (no stdout: the caller adds a summary). Sets STATUS; appends the row and the section; rewrites the report.
run_step() {
  local id=$1 title=$2 budget=$3 format=$4; shift 4
  local left=$((TOTAL - $(elapsed_s))) rc t0 wall section=$WORK/sections/$id.md
  budget=$((budget * SCALE))
  if ! wanted "$id"; then skip_step "$id" "$title" "not in QKV_GPU_STEPS=$STEPS"; return; fi
  ((budget > left)) && budget=$left
  {
    echo "## $id. $title"
    echo
  } >"$section"
  if ((budget < 5)); then
    STATUS="skipped: the total budget is spent"
    STEP_ROWS+=("| $id | $title | $STATUS | 0 | 0 |")
    echo "**$STATUS**" >>"$section"; echo >>"$section"; write_report; return
  fi
  echo "[gpu.sh $(elapsed_s)s] step $id: $title (timeout ${budget}s)" >&2
  t0=$(now_ms)
  timeout -k 5 "$budget" "$@" >"$WORK/$id.out" 2>"$WORK/$id.err"
  rc=$?
  wall=$(seconds $(($(now_ms) - t0)))
  case $rc in
    0) STATUS=ok ;;
    124 | 137) STATUS="**TIMED OUT** after ${budget} s" ;;
    *) STATUS="**FAILED** (exit $rc)" ;;
  esac
  STEP_ROWS+=("| $id | $title | $STATUS | $wall | $budget |")
  {
    echo "Status: $STATUS; wall $wall s (timeout $budget s). Command:"
    echo
    echo '```'
    printf '%q ' "$@"; echo
    echo '```'
    echo
    if [[ $format == text || ($format == none && $rc != 0) ]]; then
      echo '```text'; cat "$WORK/$id.out"; echo '```'; echo
    elif [[ $format == md ]]; then
      sed 's/^\(#\+\) /\1## /' "$WORK/$id.out"; echo  # its headings two levels down
    fi
    if [[ $rc != 0 ]]; then
      echo "Error tail (last 40 lines of stderr):"; echo
      echo '```text'; tail -n 40 "$WORK/$id.err"; echo '```'; echo
    fi
  } >>"$section"
  write_report
}

wanted() {  # ID: is the step asked for? QKV_GPU_STEPS="1,3" runs 1a-1d and 3; empty: every step
  local x
  [[ -z $STEPS ]] && return 0
  for x in ${STEPS//,/ }; do [[ $1 == "$x" || ${1:0:1} == "$x" ]] && return 0; done
  return 1
}

skip_step() {  # ID TITLE REASON: a step not run (REASON starting with **FAILED** counts as a failure)
  STATUS="skipped"
  local status="skipped: $3"
  [[ $3 == '**FAILED**'* ]] && status=$3
  STEP_ROWS+=("| $1 | $2 | $status | 0 | 0 |")
  printf '## %s. %s\n\nNot run: %s.\n\n' "$1" "$2" "$3" >"$WORK/sections/$1.md"
  write_report
}

# -- step 0: versions ---------------------------------------------------------------------------------------
echo "[gpu.sh] report: $REPORT; logs: $WORK" >&2
{
  echo
  echo "Versions:"
  echo
  timeout -k 5 20 "$PY" bench/gpu_report.py header 2>&1 || echo "- (the versions could not be read: exit $?)"
  if command -v nvidia-smi >/dev/null; then
    echo "- nvidia-smi: $(timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader 2>&1 | head -n 4 | tr '\n' ';')"
  else
    echo "- nvidia-smi: not on PATH"
  fi
} >"$WORK/sections/00-header.md"
write_report

# -- sizes ----------------------------------------------------------------------------------------------------
if ((TINY)); then
  THREADS=(--threads 1)
  TP=(--device "$DEVICE" "${THREADS[@]}" --preset tiny --batch 2 --src-len 8 --tgt-len 8 --vocab 200 --dtype fp32
      --steps 2 --warmup 1)
  ATT=(--device "$DEVICE" "${THREADS[@]}" --dtype fp32 --seq-lens 16 32 --head-dims 16 --tokens 64 --width 32
       --iters 2 --warmup 1)
  DEC=(--device "$DEVICE" "${THREADS[@]}" --preset tiny --vocab 200 --batch 2 --src-len 6 --max-len-b 4 --beam 2
       --n 1 --cache-only)
  TRAIN=(--preset tiny --vocab-size 300 --max-tokens 512 --max-steps 10 --warmup 5 --save-every 5
         --average-last 2 --log-every 5 --threads 1)
  CPLX=(--device "$DEVICE" --threads 1 --d 32 --heads 2 --n-max-attention 64 --n-max-lstm 32 --d-sweep 16,32
        --d-sweep-n 32 --path-n 2,4 --path-seeds 1 --repeats 1)
else
  TP=(--device "$DEVICE" --preset base --batch 256 --src-len 32 --tgt-len 32 --vocab 10000 --dtype bf16
      --steps 20 --warmup 3)
  ATT=(--device "$DEVICE" --dtype bf16 --seq-lens 1024 4096 8192 --head-dims 64 128 --iters 20 --warmup 3)
  DEC=(--device "$DEVICE" --preset base --vocab 8000 --batch 64 --src-len 30 --beam 5 --n 2 --cache-only)
  TRAIN=(--preset base --set dropout=0.3 --vocab-size 10000 --max-tokens 16384 --precision bf16 --warmup 300
         --save-every 100 --average-last 5 --log-every 100)
  CPLX=(--device "$DEVICE" --threads 0 --path-n 2,8,32,128,512 --path-seeds 2)
fi

# -- step 1: training throughput ------------------------------------------------------------------------------
if [[ $COMPILE == 1 ]]; then
  skip_step 1a "training throughput, eager: qkv vs nn.Transformer vs Marian" "1b-1d measure the eager rows"
else
  run_step 1a "training throughput, eager: qkv vs nn.Transformer vs Marian" 60 text \
    "$PY" bench/train_throughput.py "${TP[@]}" --only qkv,torch,marian --no-compile --curve-steps 0
fi
compiled_logs=()
for spec in "1b qkv 150" "1c torch 90" "1d marian 85"; do
  read -r id impl budget <<<"$spec"
  if [[ $COMPILE == 1 ]]; then
    run_step "$id" "training throughput, $impl eager + torch.compile ($COMPILE_MODE)" "$budget" text \
      "$PY" bench/train_throughput.py "${TP[@]}" --only "$impl" --compile-mode "$COMPILE_MODE" \
      --curve-steps "$([[ $impl == qkv ]] && echo "$CURVE_STEPS" || echo 0)"
  else
    skip_step "$id" "training throughput, $impl eager + torch.compile" "QKV_GPU_COMPILE=$COMPILE"
  fi
  compiled_logs+=("$WORK/$id.out")
done
{
  echo "## 1. Training throughput, merged (eager rows from 1a, compiled rows from 1b-1d)"
  echo
  timeout 10 "$PY" bench/gpu_report.py throughput "$WORK/1a.out" "${compiled_logs[@]}" 2>&1
  echo
} >"$WORK/sections/1-merged.md"
write_report

# -- step 2: attention ----------------------------------------------------------------------------------------
run_step 2 "attention: qkv fused vs raw SDPA" 70 text "$PY" bench/attention.py "${ATT[@]}"

# -- step 3: decoding -----------------------------------------------------------------------------------------
run_step 3 "decoding: qkv vs HF generate()" 35 text "$PY" bench/decode.py "${DEC[@]}"

# -- step 4: a short De->En training run ----------------------------------------------------------------------
RUN=$WORK/train-de-en
if ! wanted 4; then
  skip_step 4 "train De->En ${TRAIN_MINUTES} min + test BLEU" "not in QKV_GPU_STEPS=$STEPS"
elif [[ -z $MULTI30K ]]; then
  skip_step 4 "train De->En ${TRAIN_MINUTES} min + test BLEU" \
    "**FAILED**: no Multi30k found; set QKV_DATA to the folder holding multi30k/ (tried ${QKV_DATA:-shared/data and ../shared/data})"
else
  run_step 4 "train De->En ${TRAIN_MINUTES} min + test BLEU" "$TRAIN_TIMEOUT" none \
    "$PY" -m qkv.cli train --data "$MULTI30K" --src de --tgt en --out "$RUN" --overwrite --device "$DEVICE" \
    --no-progress --max-minutes "$TRAIN_MINUTES" --lr-schedule inverse_sqrt --lr 1e-3 --no-bleu "${TRAIN[@]}"
  [[ $STATUS == skipped* ]] || {
    timeout 10 "$PY" bench/gpu_report.py train "$RUN" 2>&1
    echo
    echo "Last lines of its output:"
    echo
    echo '```text'; tail -n 12 "$WORK/4.out"; echo '```'; echo
  } >>"$WORK/sections/4.md"
  write_report
fi

# -- step 5: Table 1 on the GPU -------------------------------------------------------------------------------
run_step 5 "complexity (Table 1) on $DEVICE" 40 md "$PY" bench/complexity.py "${CPLX[@]}" --out "$WORK/complexity"

write_report
failed=$(printf '%s\n' "${STEP_ROWS[@]}" | grep -c -e 'FAILED' -e 'TIMED OUT')
echo "[gpu.sh] done in $(elapsed_s) s; $failed step(s) failed; report: $REPORT" >&2
exit $((failed > 0))
}
