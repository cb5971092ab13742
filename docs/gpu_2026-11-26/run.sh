#!/bin/bash
# One device call: GPU checks of every new option, the published-recipe rows (time-boxed),
# the model-family table rows and the likelihood rows, evaluated; results tarred into $OUT.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
BUDGET=${BUDGET:-480}          # seconds this script may take in all
PUB_S=${PUB_S:-00:00:04:50}            # training seconds for each published-recipe row
EPOCHS=${EPOCHS:-20}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 9
export PYTHONPATH=/tmp/site:$PWD/src:$PWD PYTHONUNBUFFERED=1
R=/tmp/r; mkdir -p $R
el() { echo $(( $(date +%s) - T0 )); }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $R/gpu.txt
python3 -c "import torch, lightning, hydra; print(torch.__version__, lightning.__version__, hydra.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" >> $R/gpu.txt 2>&1 || { cat $R/gpu.txt; exit 8; }
cat $R/gpu.txt
D="data.root=$PWD/.gpu/data"
C="$D ${TRAINER:-trainer=gpu} ${DRY:-} runtime.num_threads=1 callbacks.embedding_projector=null trainer.enable_progress_bar=false"
train() { local name=$1; shift; local t=$(date +%s)
  python3 -m vae_lab.train $C hydra.run.dir=$R/$name "$@" > $R/$name.log 2>&1
  echo "$name train rc=$? $(( $(date +%s) - t ))s at $(el)s" | tee -a $R/status.txt; }
evaluate() { local name=$1; shift; local t=$(date +%s)
  python3 -m vae_lab.evaluate ckpt_path=$R/$name $D device=${DEVICE:-cuda} ${DRY_EVAL:-} hydra.run.dir=$R/$name/eval "$@" > $R/$name.eval.log 2>&1
  echo "$name eval rc=$? $(( $(date +%s) - t ))s at $(el)s" | tee -a $R/status.txt; }
# tiny checks of every option on the GPU, and vae_lab.load on cuda
([ "${TINY:-1}" = 1 ] && OUT=$R python3 .gpu/gpu_check.py tiny > $R/gpu_check.log 2>&1; echo "gpu_check rc=$? at $(el)s" | tee -a $R/status.txt) &
if [ "${PUB:-0}" = 1 ]; then for prior in standard_normal vampprior; do
  train pub_$prior experiment=published_nll prior=$prior trainer.max_time=$PUB_S eval.decode_batch=50000 &
done; fi
# issue 12: model families, same budget, binarized data, evaluated at k=1000 on all test images
Q="experiment=published_nll_quick trainer.max_epochs=$EPOCHS eval.k=0"
fam() { local name=$1; shift; train $name $Q "$@"; evaluate $name eval.k=1000 eval.decode_batch=50000; }
fam fam_standard &
fam fam_mog prior=mog &
fam fam_vampprior prior=vampprior &
fam fam_iwae5 objective=iwae objective.k=5 &
fam fam_warmup kl_schedule=linear kl_schedule.warmup_epochs=$((EPOCHS/2)) &
train fam_cond_conv $Q model=conv conditioning=label &
# issue 13: likelihoods on continuous pixels, same MLP, evaluated with bpd_8bit and FID/KID
# (from the issue-13 branch's tree in .gpu/wt13, not yet merged when this ran)
if [ -d .gpu/wt13/src/vae_lab/classifier ]; then
  P13="env PYTHONPATH=/tmp/site:$PWD/.gpu/wt13/src"
  ($P13 python3 -m vae_lab.classifier $D out_dir=$R/classifier runtime.num_threads=2 epochs=${CLS_EPOCHS:-5} > $R/classifier.log 2>&1; echo "classifier rc=$? at $(el)s" | tee -a $R/status.txt) &
  CLS=$!
  lik() { local name=$1; shift; local t=$(date +%s)
    $P13 python3 -m vae_lab.train $C hydra.run.dir=$R/$name trainer.max_epochs=$EPOCHS eval.k=0 "$@" > $R/$name.log 2>&1
    echo "$name train rc=$? $(( $(date +%s) - t ))s at $(el)s" | tee -a $R/status.txt
    while kill -0 $CLS 2>/dev/null; do sleep 2; done; t=$(date +%s)
    $P13 python3 -m vae_lab.evaluate ckpt_path=$R/$name $D device=${DEVICE:-cuda} ${DRY_EVAL:-} hydra.run.dir=$R/$name/eval eval.k=1000 eval.decode_batch=50000 eval.fid=true eval.classifier=$R/classifier > $R/$name.eval.log 2>&1
    echo "$name eval rc=$? $(( $(date +%s) - t ))s at $(el)s" | tee -a $R/status.txt; }
  lik lik_gaussian likelihood=gaussian &
  lik lik_gaussian_learned likelihood=gaussian_learned &
  lik lik_cb likelihood=continuous_bernoulli &
  lik lik_logistic likelihood=logistic &
  lik lik_bernoulli_binarized data=binarized likelihood=bernoulli &
fi
# small results into $OUT every 15 s (a cut-off call still returns the last whole copy)
snap() { (cd $R && find . \( -name metrics.json -o -name "*.png" -o -name status.txt -o -name "*.json" -o -name gpu.txt \) -not -path "*/.hydra/*" -size -3M > /tmp/list.txt; \
  tar czf $OUT/small.tgz.tmp -T /tmp/list.txt 2>/dev/null && mv $OUT/small.tgz.tmp $OUT/small.tgz; \
  tail -n 3 *.log > $OUT/log_tails.txt 2>/dev/null); }
( while true; do sleep 15; snap; done ) &
SNAP=$!
# stop whatever still runs before the budget ends, so the results come back
( sleep $(( BUDGET - 25 - $(el) )); echo "budget reached at $(el)s: stopping" >> $R/status.txt; pkill -INT -f "$R"; sleep 10; pkill -9 -f "$R" ) &
KILLER=$!
wait $(jobs -p | grep -v -e $KILLER -e $SNAP) 2>/dev/null
kill $KILLER $SNAP 2>/dev/null; snap
nvidia-smi >> $R/gpu.txt
cd $R && find . -name "*.ckpt" -path "*pub_*" -name "best*" > /tmp/keep.txt
tar czf $OUT/pub_ckpts.tgz -T /tmp/keep.txt
cp $R/status.txt $OUT/
echo "done at $(el)s"; cat $R/status.txt
