"""The joint Laplace engine: crossed and nested random effects, every family, exact gradients (issue 14)."""
