"""The moments engine: SEM likelihood from per-pattern sufficient statistics (FIML over missingness)."""
