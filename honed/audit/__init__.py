"""Data audit: class balance, duplicates, leakage, corrupt rows, outliers, label errors, learning curve;
for regression: target distribution and outliers, duplicates with conflicting targets, a ridge-probe curve.

One check per module, registered by name in `honed.audit.base.CHECKS` and run in `ORDER`;
`honed.audit.run.audit` is the entry point (`honed audit RECIPE` on the command line).
"""

from __future__ import annotations

from typing import Any


def audit(*args: Any, **kwargs: Any) -> Any:
    """See `honed.audit.run.audit`."""
    from honed.audit.run import audit as run_audit

    return run_audit(*args, **kwargs)


def clean(*args: Any, **kwargs: Any) -> Any:
    """See `honed.audit.cleaning.clean`."""
    from honed.audit.cleaning import clean as run_clean

    return run_clean(*args, **kwargs)
