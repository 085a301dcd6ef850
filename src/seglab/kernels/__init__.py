"""Fused fast paths for the common losses. The plain functions in ``seglab.losses`` are the reference;
``dispatch.try_fused`` is the only entry point the losses call."""
