"""Sparse block linear algebra shared by the engines: the blocked Cholesky of I + A'WA and its selected inverse."""
