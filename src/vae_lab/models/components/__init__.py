"""Encoders, decoders, likelihoods and priors: each built from config by its `_target_`."""
