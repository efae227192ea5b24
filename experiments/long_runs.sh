#!/usr/bin/env bash
# The long runs behind the Results page's targets, one after another, each resumable: a finished
# step is skipped (its results.json or CSV row exists), an interrupted one continues from its
# checkpoint. Run from the repository root: bash experiments/long_runs.sh [step ...]
# runs/ does not outlive a machine: fig3 and ergodic start from what fig3_keep and ergodic_keep
# left to commit, an interrupted train run from the checkpoint runs_keep left.
# Steps: see the functions below; with no argument all of them, in the order of the last line.
set -u
D=${PDUNROLL_SPEECH_DIR:-../shared/data/ieee_speech}
IMAGES=${PDUNROLL_IMAGES_DIR:-../shared/data/images}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
SPEECH="--data $D --backend torch --dtype float32 --quiet"
SPEECH30="$SPEECH --omega 30"  # the runs made when ω = 30 was the command line's default

PROGRESS=experiments/progress
train() {  # train TASK OUT ARGS...: a new run, or the resume of an interrupted one (also of
  # one from an earlier machine, kept by runs_keep: its checkpoint, or the finished run whose
  # step then goes on to score it)
  task=$1 out=$2; shift 2
  local progress=$PROGRESS/$(basename "$out")
  if [ ! -e "$out/results.json" ] && [ -d "$progress" ]; then
    mkdir -p "$out" && cp -n "$progress"/* "$out/"
  fi
  if [ -e "$out/results.json" ]; then return; fi
  if [ -e "$out/checkpoint.npz" ]; then  # the options again (a checkpoint written before
    local kept=() skip=0                    # run records were kept has none), less --init
    for a in "$@"; do
      if [ $skip = 1 ]; then skip=0; elif [ "$a" = --init ]; then skip=1; else kept+=("$a"); fi
    done
    pdunroll train "$task" --resume --out "$out" "${kept[@]}"
  else pdunroll train "$task" --out "$out" "$@"; fi
}

eval_1e4() {  # dev/ at L_inference = 10⁴, learned row only (the DCT's: linf_1e4_all.csv)
  [ -e $1/eval_1e4.json ] || pdunroll evaluate $1/operator.npz -L 10000 --backend torch \
    --dtype float32 --no-baseline --json $1/eval_1e4.json > $1/eval_1e4.txt
}
speech_L10() {  # the L = 10 target: 32 epochs at the default rate
  train speech runs/speech_L10_e32 $SPEECH30 --epochs 32
}
speech_L10_m3n() {  # the L = 10 target with a 3× overcomplete operator (m = 2n gained 0.6 dB over n)
  train speech runs/speech_L10_m960_e16 $SPEECH30 --m 960 --epochs 16
}
speech_L10_more() {  # 24 more epochs from the 32-epoch ω = 30 operator at half the rate
  train speech runs/speech_L10_more $SPEECH30 --init docs/_static/results/speech/operator_L10_w30.npz \
    --lr 2.5e-4 --epochs 24
}
speech_L10_tail() {  # the 32-epoch ω = 30 operator, 16 epochs at a small rate (5e-5 -> 5e-8): its
  # validation still rose by 0.01 dB per epoch at its end, at rates near 5e-7
  train speech runs/speech_L10_tail $SPEECH30 --compile \
    --init docs/_static/results/speech/operator_L10_w30.npz --lr 5e-5 --epochs 16
}
speech_L10_w40() {  # ω = 40: the best ω of the 3-epoch sweep (+1.83 dB against ω = 30's +1.68),
  # unstable at 8 epochs with Adam 1e-3 (best epoch 1); here at the default 5e-4 for 32 epochs
  train speech runs/speech_L10_w40_e32 $SPEECH --compile --omega 40 --epochs 32
}
speech_L10_w40_e8() {  # ω = 40 at the command line's default length (8 epochs, 5e-4): is it the better default?
  train speech runs/speech_L10_w40_e8 $SPEECH --compile --omega 40
}
speech_L100() {  # L = 100, fine-tuned from the L = 10 operator at the paper's small rate (its
  # first try at 1e-4 lost 0.16 dB of validation in its first epoch)
  out=runs/speech_L100_lr1e-5
  train speech $out $SPEECH30 --init docs/_static/results/speech/operator_L10_w30.npz \
    -L 100 --lr 1e-5 --epochs 4
  eval_1e4 $out
}
speech_L100_w400() {  # L = 100 at ω = 400, chosen on validation frames (3000 of train/'s held-out
  # files, L = 100: the L = 10 operator 13.38 dB at ω = 30, 15.03 at 300, 15.20 at 400, 15.10
  # at 500; the DCT 12.36 -> 12.83): at ω = 30 a 100-step network has nearly converged, at 400
  # its primal steps are 10× smaller; fine-tuned from the L = 10 operator (ω = 40)
  out=runs/speech_L100_w400
  train speech $out $SPEECH --compile --init docs/_static/results/speech/operator_L10.npz \
    -L 100 --omega 400 --lr 5e-5 --warmup 0.05 --epochs 2
}
speech_fixed_point() {  # the fixed point: L = 300 with the asymptotic gradient, then 10⁴ steps
  # (at 1e-4 its first epoch lost validation: 13.44 dB against 13.48 at the start)
  out=runs/speech_fp_lr1e-5
  train speech $out $SPEECH30 --init docs/_static/results/speech/operator_L10_w30.npz \
    -L 300 --method asymptotic --b 100 --lr 1e-5 --epochs 4
  eval_1e4 $out
}
speech_L100_more() {  # speech_L100's operator, 8 more epochs at the paper's 1e-5 -> 1e-8
  out=runs/speech_L100_more
  train speech $out $SPEECH30 --compile --init runs/speech_L100_lr1e-5/operator.npz \
    -L 100 --lr 1e-5 --epochs 8
}
speech_fixed_point_more() {  # speech_fixed_point's operator (committed), 6 more
  # epochs at 3e-5 -> 3e-8 after a warm-up over the first 5 % (1e-5 gained 0.08 dB in 4 epochs;
  # 1e-4 without warm-up lost validation in its first epoch)
  out=runs/speech_fp_more
  train speech $out $SPEECH30 --init docs/_static/results/speech/operator_fixed_point_e4.npz \
    -L 300 --method asymptotic --b 100 --lr 3e-5 --warmup 0.05 --epochs 6
  eval_1e4 $out
}
speech_fixed_point_more2() {  # speech_fixed_point_more's operator (committed), 8 more epochs at
  # 5e-5 (at 3e-5 validation rose 0.02-0.04 dB per epoch to the end: 13.62 -> 13.74 dB)
  out=runs/speech_fp_more2
  train speech $out $SPEECH30 --init docs/_static/results/speech/operator_fixed_point.npz \
    -L 300 --method asymptotic --b 100 --lr 5e-5 --warmup 0.05 --epochs 8
  eval_1e4 $out
}
denoise_data() {  # runs/denoise_data: train400 as train/, Set12 as dev/ (the test set)
  mkdir -p runs/denoise_data
  ln -sfn "$(realpath "$IMAGES/train400")" runs/denoise_data/train
  ln -sfn "$(realpath "$IMAGES/set12")" runs/denoise_data/dev
}
DENOISE="--data runs/denoise_data --kernel 7 --patch 40 --max-patches 6000 --backend torch \
  --dtype float32 --quiet"
S25="--sigma 0.0980392 --radius-factor 0.9"
set12() {  # set12 OUT L...: Set12 scored with OUT's operator at each L (TV, DCT start, learned)
  local out=$1 L; shift
  for L in "$@"; do
    [ -e $out/set12_L$L.json ] || pdunroll evaluate $out/operator.npz -L $L \
      --backend torch --dtype float32 --json $out/set12_L$L.json > $out/set12_L$L.txt
  done
}
denoise_sigma() {  # denoise_sigma SIGMA/255 SIGMA C: train400 -> set12, 48 filters 7×7; the radius
  # factor c chosen for TV on held-out train400 images; Set12 scored at L = 30, 100 and 300
  denoise_data
  train denoise runs/denoise_s$2 $DENOISE -L 30 --epochs 3 --sigma "$1" --radius-factor "$3"
  set12 runs/denoise_s$2 30 100 300
}
denoise_s25() { denoise_sigma 0.0980392 25 0.9; }
denoise_s25_valid() {  # denoise_s25 with valid filter responses: on 40×40 patches the periodic
  # boundary's wrap-around edges touch 28 % of the 7×7 windows (on scikit-image's images the
  # valid boundary turned a validation loss against TV into a lead)
  denoise_data
  train denoise runs/denoise_s25_valid $DENOISE $S25 -L 30 --epochs 3 --boundary valid
  set12 runs/denoise_s25_valid 100 300
}
denoise_s25_L100() {  # denoise_s25's filters, 2 more epochs at L = 100 with the asymptotic gradient
  # (b = 30): L = 30 leaves the filter models unconverged (scored at L = 100 they gain 0.25 dB)
  denoise_data
  train denoise runs/denoise_s25_L100 $DENOISE $S25 -L 100 --method asymptotic --b 30 \
    --lr 2e-3 --warmup 0.1 --epochs 2 --init docs/_static/results/denoise/model_sigma25_L30.npz
  set12 runs/denoise_s25_L100 100 300
}
denoise_s25_L100_more() {  # denoise_s25_L100's filters (committed), 3 more epochs at L = 100
  # with the asymptotic gradient (validation fell by 0.7 % in its second epoch)
  denoise_data
  train denoise runs/denoise_s25_L100_more $DENOISE $S25 -L 100 --method asymptotic --b 30 \
    --lr 1e-3 --warmup 0.05 --epochs 3 --init docs/_static/results/denoise/model_sigma25_L100.npz
  set12 runs/denoise_s25_L100_more 300
}
denoise_s25_w30() {  # denoise_s25_L100_more's filters (committed), 3 more epochs at L = 100 with
  # ω = 30: on Set12 images the filters at L = 100 score at ω = 30 what they score at L = 300
  # with the trained ω = 10 (their fixed point, 0.06 dB above L = 100 at ω = 10), so training
  # at ω = 30 trains the model that is scored (at 2e-3 and ω = 10 the first epoch lost
  # validation: 1.6858 against 1.6813)
  denoise_data
  train denoise runs/denoise_s25_w30 $DENOISE $S25 -L 100 --omega 30 --method asymptotic --b 30 \
    --lr 1e-3 --warmup 0.05 --epochs 3 --init docs/_static/results/denoise/model_sigma25_L100_more.npz
  set12 runs/denoise_s25_w30 300
}
denoise_s25_w30_more() {  # denoise_s25_w30's filters (committed), 3 more epochs (validation
  # fell 0.5 % in its 3 epochs, Set12 at L = 300: +0.49 dB over TV)
  denoise_data
  train denoise runs/denoise_s25_w30_more $DENOISE $S25 -L 100 --omega 30 --method asymptotic \
    --b 30 --lr 1e-3 --warmup 0.05 --epochs 3 --init docs/_static/results/denoise/model_sigma25_w30.npz
  set12 runs/denoise_s25_w30_more 300
}
denoise_s15() { denoise_sigma 0.0588235 15 0.85; }
FIG3=runs/fig3_paper_exact FIG3_KEPT=docs/_static/results/eusipco_fig3/paper
FIG3_PROGRESS=$PROGRESS/fig3_paper_exact
fig3() {  # EUSIPCO Fig. 3, exact convention, the paper's 20 epochs at 1e-5 -> 1e-8 (torch float32,
  # compiled steps); three seeds at L = 10 and 100, all rows in one CSV (the DCT scored once).
  # Starts from what is committed: the rows, the DCT's scores and the runs in progress
  mkdir -p $FIG3
  [ -e $FIG3/fig3.csv ] || cp $FIG3_KEPT/fig3_exact.csv $FIG3/fig3.csv
  [ -e $FIG3/dct_mse.json ] || cp $FIG3_KEPT/dct_mse.json $FIG3/
  for f in $FIG3_PROGRESS/checkpoint_*.npz; do [ -e "$f" ] && cp -n "$f" $FIG3/; done
  # seed 0 of every L first (the whole curve), then the other seeds (at L = 10 they agreed to
  # 0.002 dB: the seeds only reorder the minibatches)
  local L s
  for L in 10 20 40 100 200; do fig3_run $L 0; done
  for s in 1 2; do for L in 10 100; do fig3_run $L $s; done; done
}
fig3_run() {  # fig3_run L SEED: one L_training, both gradient methods (skipped when in the CSV)
  python experiments/eusipco_fig3.py --data "$D" --conventions exact --L $1 --seed $2 \
    --l-inf2 0 --backend torch --compile --quiet --out $FIG3
}
fig3_keep() {  # what fig3 has done, to commit: the rows, the DCT's scores, the runs in progress
  # (a machine's runs/ does not outlive its session; fig3 starts from these)
  cp $FIG3/fig3.csv $FIG3_KEPT/fig3_exact.csv
  cp $FIG3/dct_mse.json $FIG3_KEPT/
  rm -rf $FIG3_PROGRESS
  for f in $FIG3/checkpoint_*.npz; do [ -e "$f" ] && mkdir -p $FIG3_PROGRESS && cp "$f" $FIG3_PROGRESS/; done
  true
}
runs_keep() {  # what train runs in progress need on the next machine, to commit: the checkpoint
  # of an interrupted run, the operator and results of a finished one whose 10⁴ scoring was cut
  # short (train restores either); removed once the run is finished and scored
  local c d
  for c in runs/*/checkpoint.npz; do
    [ -e "$c" ] || continue
    d=$(basename "$(dirname "$c")")
    [ -e runs/$d/results.json ] || { mkdir -p $PROGRESS/$d && cp "$c" $PROGRESS/$d/; }
  done
  for c in runs/*/eval_1e4.txt; do
    [ -e "$c" ] || continue
    d=$(basename "$(dirname "$c")")
    [ -e runs/$d/eval_1e4.json ] || { mkdir -p $PROGRESS/$d &&
      cp runs/$d/operator.npz runs/$d/results.json $PROGRESS/$d/; }
  done
  for d in $PROGRESS/*/; do
    d=$(basename "$d")
    [ "$d" = fig3_paper_exact ] && continue
    if [ -e runs/$d/eval_1e4.json ] || { [ -e runs/$d/results.json ] && [ ! -e runs/$d/eval_1e4.txt ]; }; then
      rm -rf "${PROGRESS:?}/$d"
    fi
  done
  true
}
ERGODIC_KEPT=docs/_static/results/ergodic_fig12/long
ergodic() {  # ergodic Fig. 1-2, 10 epochs over 32 000 frames (10 000 steps), three seeds; the
  # curves as means over 20 steps. Starts from the committed runs (ergodic_keep)
  for s in 0 1 2; do
    out=runs/ergodic_fig12_long_seed$s
    if [ ! -e $out/fig12.csv ] && [ -e $ERGODIC_KEPT/seed$s/fig12.csv ]; then
      mkdir -p $out && cp $ERGODIC_KEPT/seed$s/fig12*.csv $out/
    fi
    python experiments/ergodic_fig12.py --data "$D" --epochs 10 --max-train 32000 --seed $s \
      --steps-every 20 --quiet --out $out
  done
}
ergodic_keep() {  # the ergodic runs done so far, to commit
  for s in 0 1 2; do
    out=runs/ergodic_fig12_long_seed$s
    [ -e $out/fig12.csv ] && mkdir -p $ERGODIC_KEPT/seed$s && cp $out/fig12*.csv $ERGODIC_KEPT/seed$s/
  done
  true
}

for step in "${@:-speech_L10 speech_L10_m3n speech_L10_more speech_L10_tail speech_L10_w40 speech_L10_w40_e8 speech_L100 speech_L100_more speech_L100_w400 speech_fixed_point speech_fixed_point_more speech_fixed_point_more2 denoise_s25 denoise_s15 fig3 ergodic}"; do
  for s in $step; do $s; done
done
