"""`honed climb`: from a plateaued recipe to a measurably better model, with the evidence (see run.py)."""

TASKS = ("classification", "regression")  # what a climb runs (multi-label: no stage proposes for it yet)
