"""seqpref: how preference-alignment stages interfere, measured pair by pair against a fixed base model.

The Snakemake workflow (``Snakefile``, ``workflow/``) calls this package's modules one step at a time:
:mod:`seqpref.data` (prepare), :mod:`seqpref.logps` (base log-probs), :mod:`seqpref.train` (one LoRA
stage), :mod:`seqpref.score` (pair scores), :mod:`seqpref.aggregate` (tables) and
:mod:`seqpref.figures` (one module per figure).
"""

__version__ = "0.1.0"
