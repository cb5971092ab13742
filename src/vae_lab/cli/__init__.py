"""Command-line plumbing: the one-line errors every command reports (`errors`, and Hydra's
composition errors in `hydra_errors`), the entry point they share (`entry`), and the
typed options of the two commands that read a checkpoint (`checkpoint_job`)."""
