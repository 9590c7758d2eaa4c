"""Developer scripts: ``python -m scripts.gen_docs``."""
