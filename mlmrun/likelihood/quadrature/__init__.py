"""The nested quadrature engine: adaptive Gauss-Hermite, Laplace per unit, and discrete mass points."""
