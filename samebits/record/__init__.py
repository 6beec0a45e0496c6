"""Prove an output: fingerprints, records, verification, deterministic setup."""
