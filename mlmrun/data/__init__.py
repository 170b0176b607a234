"""Data: reading, filtering, wide-to-long stacking, level indices."""

from mlmrun.data.levels import LevelIndex, build_levels
from mlmrun.data.load import LoadedData, load_data

__all__ = ["LevelIndex", "LoadedData", "build_levels", "load_data"]
