"""Look up a response family by name and link, as written in a model spec."""

from __future__ import annotations

from functools import cache

from mlmrun.families.censored import CensoredGaussian
from mlmrun.families.choice import ChoiceLogit, Multinomial
from mlmrun.families.composite import CompositeGaussian, CompositePoisson
from mlmrun.families.counts import NegBinomial1, NegBinomial2, ZINegBinomial1, ZINegBinomial2, ZIPoisson
from mlmrun.families.families import Binomial, Family, Gamma, Gaussian, Ordinal, Poisson

FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (Gaussian, Binomial, Poisson, Gamma, Ordinal)}
FAMILIES |= {cls.name: cls for cls in (Multinomial, ChoiceLogit)}
FAMILIES.update({cls.name: cls for cls in (NegBinomial2, NegBinomial1, ZIPoisson, ZINegBinomial2, ZINegBinomial1,
                                          CensoredGaussian, CompositePoisson, CompositeGaussian)})
ALLOWED_LINKS: dict[str, tuple[str, ...]] = {name: cls.allowed_links for name, cls in FAMILIES.items()}
DEFAULT_LINK: dict[str, str] = {name: cls.default_link for name, cls in FAMILIES.items()}


@cache
def get_family(family: str, link: str | None = None) -> Family:
    """The (shared, immutable) Family for ``family`` with ``link``, or its default link when None.

    Raises ValueError naming the allowed families or links for an unknown
    family or a family/link combination that is not supported.
    """
    try:
        cls = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r}; expected one of: {', '.join(FAMILIES)}") from None
    return cls(link)
