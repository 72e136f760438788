"""Tiny GPT-2 and Llama checkpoints for the model tests, and their reference
outputs: runs tests/fixtures/make_models.py with the checkpoints going to
models/ beside this oracle's file (so $GB_ORACLE_DIR/models/<variant>/) and
the outputs to the oracle file itself (gbt_oracle_load("models")).
docs/fixtures.md describes both."""
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1]
models = os.path.join(os.path.dirname(os.path.abspath(out)), "models")
subprocess.check_call([sys.executable, os.path.join(here, "..", "fixtures", "make_models.py"), models,
                       "--oracle", out])
