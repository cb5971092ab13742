"""Run plumbing: a run's directory (`directory`) and what it writes there (`outputs`), its
checkpoints and how they are written and read back (`checkpoint_io`, `checkpoints`,
`allowed_targets`, `moved`), resuming (`resume`), sweeps and SLURM (`sweeps`, `slurm`),
and process-wide torch settings (`runtime`)."""
