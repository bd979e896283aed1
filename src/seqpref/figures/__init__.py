"""seqpref's figures: one module per figure, each a pure ``draw(table, **options) -> Figure``.

Every module is also a CLI for the figure rules,
``python -m seqpref.figures.NAME TABLE STYLE PNG PDF --options JSON`` (see :mod:`.common`).
"""
