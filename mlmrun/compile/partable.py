"""The parameter table: one row per parameter (free, fixed or constrained), lavaan-style.

`free` is 0 for a fixed row and k >= 1 for the k-th element of the optimiser's
vector; rows sharing k are constrained equal. Each free row has a transform
between its natural value and the optimiser's scale:

- identity: value = free
- log:      value = exp(free)              (residual SDs, gamma shape)
- ordered:  value = previous row's value + exp(free)  (thresholds after the first of a group)

Everything that needs a parameter reads it through `unpack`; nothing keeps a
second parameter list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlmrun.errors import SpecError

COLUMNS = ["name", "block", "lhs", "op", "rhs", "level", "equation", "free", "value",
           "lower", "upper", "transform", "group", "origin"]
BLOCKS = ("fixed", "loading", "sd", "corr", "B", "Gamma", "residual", "hetero", "threshold", "shape",
          "dispersion", "zeroinfl", "composite", "mass", "logit", "class_gamma", "rescov", "rescorr")


TEXT_COLUMNS = ("name", "block", "lhs", "op", "rhs", "level", "equation", "transform", "group", "origin")
"""Columns holding text (object arrays in `ParTable.column`, pandas' text dtype in `ParTable.frame`)."""


@dataclass
class ParTableBuilder:
    """Accumulates rows while compiling; `build()` numbers the free parameters."""

    rows: list[dict] = field(default_factory=list)
    _equal: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, block: str, *, value: float, free: bool = True, lhs: str = "", op: str = "",
            rhs: str = "", level: str = "", equation: str = "", lower: float = -np.inf,
            upper: float = np.inf, transform: str = "identity", group: str = "", origin: str = "user",
            equal_to: str | None = None) -> int:
        """Append a row; `equal_to` names an earlier row this one is constrained equal to. Returns the row id."""
        if block not in BLOCKS:
            raise ValueError(f"unknown parameter block {block}")
        if any(r["name"] == name for r in self.rows):
            raise SpecError(f"two parameters would both be named '{name}' (a latent variable, random term or "
                            "column name produces it twice); rename one of them")
        self.rows.append(dict(name=name, block=block, lhs=lhs, op=op, rhs=rhs, level=level, equation=equation,
                              free=1 if free else 0, value=float(value), lower=float(lower), upper=float(upper),
                              transform=transform, group=group, origin=origin))
        if equal_to is not None:
            self._equal[name] = equal_to
        return len(self.rows) - 1

    def names(self) -> list[str]:
        """Names of the rows added so far."""
        return [r["name"] for r in self.rows]

    def fix(self, name: str, value: float) -> None:
        """Fix an existing row at a value (dropping any equality it had)."""
        row = self.rows[self.names().index(name)]
        row["free"], row["value"] = 0, float(value)
        self._equal.pop(name, None)

    def set_equal(self, name: str, to: str) -> None:
        """Constrain an existing row equal to another existing row."""
        self._equal[name] = to

    def build(self) -> ParTable:
        """Number free rows (rows linked by equalities share a number, in table order) and freeze the table.

        Works on plain lists and numpy arrays: the pandas frame is made only when
        someone reads `ParTable.frame` (building it costs more than the rest of a small model's table).
        """
        rows = self.rows
        names = [r["name"] for r in rows]
        index = {n: i for i, n in enumerate(names)}
        parent = list(range(len(names)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for name, target in self._equal.items():
            a, b = root(index[name]), root(index[target])
            parent[max(a, b)] = min(a, b)
        roots = [root(i) for i in range(len(names))]
        is_free = [bool(r["free"]) for r in rows]
        members: dict[int, list[int]] = {}
        for i, r in enumerate(roots):
            members.setdefault(r, []).append(i)
        for r in sorted(members):
            group = members[r]
            flags = {is_free[i] for i in group}
            if len(flags) > 1:
                raise ValueError("fixed and free parameters constrained equal: " + ", ".join(names[i] for i in group))
        free = np.zeros(len(rows), dtype=np.int64)
        value = np.array([r["value"] for r in rows], dtype=float)
        number: dict[int, int] = {}
        for i in range(len(rows)):
            if is_free[i]:
                r = roots[i]
                number.setdefault(r, len(number) + 1)
                free[i] = number[r]
                value[i] = value[r]
        columns: dict[str, np.ndarray] = {}
        for col in COLUMNS:
            if col == "free":
                columns[col] = free
            elif col == "value":
                columns[col] = value
            elif col in TEXT_COLUMNS:
                columns[col] = _object_array([r[col] for r in rows])
            else:
                columns[col] = np.array([r[col] for r in rows], dtype=float)
        return ParTable.from_columns(columns)


def _object_array(items: list) -> np.ndarray:
    """A 1-d object array of `items` (np.array would make a 2-d array of tuples, or a fixed-width string array)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


class ParTable:
    """Frozen table of parameters with pack/unpack between natural values and the free vector.

    The table's columns are read-only numpy arrays (`column(name)`: text columns
    as object arrays, `free` as int64, `value`/`lower`/`upper` as floats), cheap to
    read in a fit's hot set-up code; `frame` is the same table as a pandas
    DataFrame, made once on first use.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        frame = frame.reset_index(drop=True)
        self._setup({col: frame[col].to_numpy() for col in frame.columns if col in COLUMNS}, frame)

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray]) -> ParTable:
        """A table from one array per column of COLUMNS (as ParTableBuilder.build makes them)."""
        table = cls.__new__(cls)
        table._setup(columns, None)
        return table

    def _setup(self, columns: dict[str, np.ndarray], frame: pd.DataFrame | None) -> None:
        self._frame = frame
        self._given_frame = frame is not None
        self._columns: dict[str, np.ndarray] = {}
        for col, values in columns.items():
            arr = np.array(values, dtype=np.int64 if col == "free" else None, copy=True)
            if col in ("value", "lower", "upper"):
                arr = arr.astype(float, copy=False)
            arr.setflags(write=False)
            self._columns[col] = arr
        self._free = self._columns["free"].astype(int)
        self._fixed_values = self._columns["value"].astype(float)
        self._transform = self._columns["transform"]
        self._group = self._columns.get("group")
        self.n_free = int(self._free.max(initial=0))
        ks, first = np.unique(self._free, return_index=True)
        keep = ks > 0
        self._first = first[keep].astype(int)
        if not np.array_equal(ks[keep], np.arange(1, self.n_free + 1)):
            self._first = np.array([int(np.flatnonzero(self._free == k)[0]) for k in range(1, self.n_free + 1)],
                                   dtype=int)  # a gap in the numbering: raises IndexError, as before
        self._validate()
        rows = np.arange(len(self._free))
        self._identity = rows[(self._free > 0) & (self._transform == "identity")]
        self._log = rows[(self._free > 0) & (self._transform == "log")]
        self._ordered = rows[(self._free > 0) & (self._transform == "ordered")]

    def _validate(self) -> None:
        on = np.flatnonzero(self._free > 0)
        same = self._transform[on] == self._transform[self._first[self._free[on] - 1]]
        if not np.all(same):
            k = int(self._free[on[np.flatnonzero(~same)[0]]])
            members = np.flatnonzero(self._free == k)
            raise ValueError("rows constrained equal must share a transform: " + ", ".join(self.names[members]))

    @property
    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame with COLUMNS (made on first use; treat it as read-only)."""
        if self._frame is None:
            self._frame = _frame_of(self._columns)
        return self._frame

    def column(self, name: str) -> np.ndarray:
        """One column of the table as a read-only numpy array (the same values as `frame[name].to_numpy()`)."""
        return self._columns[name]

    def __len__(self) -> int:
        return len(self._free)

    @property
    def names(self) -> np.ndarray:
        """Parameter names, one per row (read-only)."""
        return self._columns["name"]

    def index(self, name: str) -> int:
        """Row id of a parameter by name."""
        hits = np.flatnonzero(self.names == name)
        if len(hits) == 0:
            raise KeyError(name)
        return int(hits[0])

    @property
    def start_values(self) -> np.ndarray:
        """Natural-scale values stored in the table (fixed values and starting values)."""
        return self._fixed_values.copy()

    def with_values(self, values: np.ndarray) -> ParTable:
        """A copy whose `value` column holds `values` (e.g. new starting values)."""
        if self._given_frame:
            frame = self.frame.copy()
            frame["value"] = np.asarray(values, dtype=float)
            return ParTable(frame)
        columns = dict(self._columns)
        columns["value"] = np.asarray(values, dtype=float)
        return ParTable.from_columns(columns)

    def free_names(self) -> list[str]:
        """Name of each free-vector element (the first row carrying it)."""
        return [str(self.names[i]) for i in self._first]

    def unpack(self, free: np.ndarray) -> np.ndarray:
        """Natural values of every row from the optimiser's free vector."""
        values = self._fixed_values.copy()
        values[self._identity] = free[self._free[self._identity] - 1]
        values[self._log] = np.exp(free[self._free[self._log] - 1])
        for i in self._ordered:
            values[i] = values[i - 1] + np.exp(free[self._free[i] - 1])
        return values

    def pack(self, values: np.ndarray) -> np.ndarray:
        """Free vector from natural values (inverse of unpack on free rows)."""
        free = np.zeros(self.n_free)
        for k, i in enumerate(self._first):
            t = self._transform[i]
            v = values[i]
            if t == "identity":
                free[k] = v
            elif t == "log":
                free[k] = np.log(max(v, 1e-300))
            elif t == "ordered":
                free[k] = np.log(max(v - values[i - 1], 1e-300))
        return free

    def jacobian(self, free: np.ndarray) -> np.ndarray:
        """d value / d free, shape (n_rows, n_free)."""
        jac = np.zeros((len(self), self.n_free))
        jac[self._identity, self._free[self._identity] - 1] = 1.0
        k = self._free[self._log] - 1
        jac[self._log, k] = np.exp(free[k])
        for i in self._ordered:
            jac[i] = jac[i - 1]
            jac[i, self._free[i] - 1] += np.exp(free[self._free[i] - 1])
        return jac

    def free_bounds(self) -> list[tuple[float | None, float | None]]:
        """Bounds on the free vector (identity rows only; transformed rows are unbounded)."""
        out: list[tuple[float | None, float | None]] = []
        for i in self._first:
            if self._transform[i] == "identity":
                lo, hi = self._columns["lower"][i], self._columns["upper"][i]
                out.append((None if np.isinf(lo) else float(lo), None if np.isinf(hi) else float(hi)))
            else:
                out.append((None, None))
        return out

    def rows_of(self, block: str) -> np.ndarray:
        """Row ids of a block."""
        return np.flatnonzero(self._columns["block"] == block)


def _frame_of(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The DataFrame ParTableBuilder.build made before the table kept numpy columns: the same columns and dtypes."""
    if not len(columns["free"]):
        frame = pd.DataFrame([], columns=COLUMNS)
        frame["free"] = np.zeros(0, dtype=int)
        return frame
    return pd.DataFrame({col: columns[col] for col in COLUMNS})
