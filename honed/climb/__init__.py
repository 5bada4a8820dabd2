"""`honed climb`: from a plateaued recipe to a measurably better model, with the evidence (see run.py)."""
