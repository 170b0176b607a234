"""Family lookup by name and link, defaults, and the errors for unsupported combinations."""

from __future__ import annotations

import pytest

from mlmrun.families import ALLOWED_LINKS, DEFAULT_LINK, LINKS, Family, get_family, get_link


def test_default_links():
    assert DEFAULT_LINK == {
        "gaussian": "identity",
        "binomial": "logit",
        "poisson": "log",
        "gamma": "log",
        "ordinal": "logit",
        "multinomial": "logit",
        "ranking": "logit",
        "nbinom2": "log", "nbinom1": "log", "zip": "log", "zinb2": "log", "zinb1": "log",
        "censored_gaussian": "identity", "composite_poisson": "log", "composite_gaussian": "identity",
    }
    for name, link in DEFAULT_LINK.items():
        fam = get_family(name, None)
        assert (fam.name, fam.link) == (name, link)
        assert fam.link_function is get_link(link)


def test_allowed_links():
    assert ALLOWED_LINKS == {
        "gaussian": ("identity", "log"),
        "binomial": ("logit", "probit", "cloglog"),
        "poisson": ("log",),
        "gamma": ("log",),
        "ordinal": ("logit", "probit", "cloglog"),
        "multinomial": ("logit",),
        "ranking": ("logit",),
        "nbinom2": ("log",), "nbinom1": ("log",), "zip": ("log",), "zinb2": ("log",), "zinb1": ("log",),
        "censored_gaussian": ("identity",), "composite_poisson": ("log",), "composite_gaussian": ("identity", "log"),
    }
    for name, links in ALLOWED_LINKS.items():
        for link in links:
            assert get_family(name, link).link == link


def test_bad_combination_lists_allowed_links():
    with pytest.raises(ValueError, match=r"'logit'.*poisson.*allowed links: log$"):
        get_family("poisson", "logit")
    with pytest.raises(ValueError, match="allowed links: logit, probit, cloglog"):
        get_family("binomial", "identity")


def test_unknown_family_and_link():
    with pytest.raises(ValueError, match="unknown family 'weibull'.*gaussian, binomial"):
        get_family("weibull")
    with pytest.raises(ValueError, match="unknown link 'sqrt'"):
        get_link("sqrt")
    assert set(LINKS) == {"identity", "log", "logit", "probit", "cloglog"}


def test_families_are_shared_immutable_values():
    fam = get_family("binomial", "probit")
    assert fam is get_family("binomial", "probit")
    assert fam == type(fam)("probit") and hash(fam) == hash(type(fam)("probit"))
    assert fam != get_family("binomial", "logit")
    assert isinstance(fam, Family)
    assert repr(fam) == "Binomial(link='probit')"
    with pytest.raises(AttributeError):
        fam.name = "poisson"


def test_n_params():
    assert get_family("gaussian").n_params() == 1
    assert get_family("gamma").n_params() == 1
    assert get_family("binomial").n_params() == 0
    assert get_family("poisson").n_params() == 0
    assert get_family("ordinal").n_params(5) == 4
    with pytest.raises(ValueError, match="n_categories"):
        get_family("ordinal").n_params()
