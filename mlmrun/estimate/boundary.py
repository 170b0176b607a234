"""What both engines say about an SD estimated at its boundary (0), and why it has no standard error."""

from __future__ import annotations

from mlmrun.results import variance_name


def no_se_at_boundary(sd_name: str) -> str:
    """The warning for an SD at 0: neither sd() nor its var() row gets a standard error.

    At the boundary the delta method gives var() an SE of 0 (d var / d sd = 2 sd = 0) while sd() gets
    a finite one from a curvature that Wald theory does not cover; reporting one and not the other
    would be inconsistent, so both are null and the LR test is the inference to use.
    """
    return (f"{sd_name} and {variance_name(sd_name)}: no standard error at the boundary (estimate 0), where the "
            "delta method and Wald inference do not apply; use the LR test")
