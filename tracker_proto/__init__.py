"""Wire types of tracker: generated from protos/ by scripts/gen_protos.py (do not edit)."""
