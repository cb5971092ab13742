"""Command-line plumbing: the one-line errors every command reports (`errors`, and Hydra's
composition errors in `hydra_errors`) and the entry point they share (`entry`). The typed
options of the commands are `vae_lab.config`'s."""
