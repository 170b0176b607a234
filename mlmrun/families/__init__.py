"""Response families and link functions: log densities and their derivatives in the linear predictor."""

from mlmrun.families.families import Binomial, Family, Gamma, Gaussian, Ordinal, Poisson
from mlmrun.families.links import (
    LINKS,
    CdfLink,
    CloglogLink,
    IdentityLink,
    IntervalLogProb,
    Link,
    LogitLink,
    LogLink,
    ProbitLink,
    get_link,
)
from mlmrun.families.registry import ALLOWED_LINKS, DEFAULT_LINK, FAMILIES, get_family

__all__ = [
    "ALLOWED_LINKS",
    "DEFAULT_LINK",
    "FAMILIES",
    "LINKS",
    "Binomial",
    "CdfLink",
    "CloglogLink",
    "Family",
    "Gamma",
    "Gaussian",
    "IdentityLink",
    "IntervalLogProb",
    "Link",
    "LogLink",
    "LogitLink",
    "Ordinal",
    "Poisson",
    "ProbitLink",
    "get_family",
    "get_link",
]
