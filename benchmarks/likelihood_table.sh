#!/usr/bin/env bash
# The likelihood table of docs/results/likelihoods.md: one network at one budget, a row per
# likelihood, columns bpd_8bit, FID, KID, KL and active units, with a sample grid per run.
#
#   benchmarks/likelihood_table.sh [train overrides ...]      e.g. trainer=gpu trainer.max_epochs=50
#
# Trains the five likelihoods on the 8-bit images (one multirun) and the Bernoulli on
# binarized images (a different data set, its own row), evaluates each best checkpoint
# (importance-weighted bound with EVAL_K samples, bpd_8bit, FID and KID of 10,000 prior
# samples with their floor and ceiling), writes 32 samples per run, and prints the table
# (`python -m vae_lab.report`, also in $OUT/report.md and report.csv). Environment:
# OUT (default outputs/likelihood_table), EVAL_K (default 1000), DATA_ARGS (overrides for
# evaluate and sample, e.g. "data.root=DIR"), EVAL_ARGS (more for evaluate alone, e.g.
# "eval.fid_samples=1000"), PY (default .venv/bin/python).
set -euo pipefail

out=${OUT:-outputs/likelihood_table}
py=${PY:-.venv/bin/python}
train=(model=mlp latent_dim=16 "$@")
read -r -a data_args <<< "${DATA_ARGS:-}"
read -r -a eval_args <<< "${EVAL_ARGS:-}"

if ! ls outputs/classifier/fashion_cnn-*.pt >/dev/null 2>&1 \
    && [[ " ${eval_args[*]} " != *" eval.classifier="* ]]; then
    make classifier  # FID and KID are measured in its features
fi
"$py" -m vae_lab.train -m likelihood=gaussian,gaussian_learned,continuous_bernoulli,logistic,bernoulli \
    "${train[@]}" hydra.sweep.dir="$out/8bit"
"$py" -m vae_lab.train likelihood=bernoulli data=binarized "${train[@]}" hydra.run.dir="$out/binarized"
for run in "$out"/8bit/*/ "$out"/binarized/; do
    run=${run%/}
    best=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["checkpoint"])' \
        "$run/metrics.json")  # the checkpoint of the best validation ELBO
    "$py" -m vae_lab.evaluate ckpt_path="$run/$best" eval.k="${EVAL_K:-1000}" eval.fid=true \
        ${data_args[@]+"${data_args[@]}"} ${eval_args[@]+"${eval_args[@]}"}
    "$py" -m vae_lab.sample ckpt_path="$run/$best" sample.n=32 \
        sample.out="$run/images/table_samples.png" ${data_args[@]+"${data_args[@]}"}
done
"$py" -m vae_lab.report "$out"
