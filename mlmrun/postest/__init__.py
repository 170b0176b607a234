"""Post-estimation: what a fitted model is used for after the fit."""
