"""Read a spec file into Python data and a line map, within budgets, in one pass over the YAML events.

Specs may come from untrusted pull requests, so reading one must be cheap whatever
it contains. The file is read only up to `MAX_SPEC_BYTES`; it must be UTF-8 text.
The YAML is parsed with PyYAML's (iterative) parser and the data are built here
from its events with an explicit stack, instead of by PyYAML's recursive composer
and constructor, so that:

- nesting deeper than `MAX_DEPTH` is refused at the first level too deep (no RecursionError);
- the number of nodes is counted as they arrive (`MAX_NODES`, an alias counts once);
- an alias is never expanded: it shares the object its anchor built, and the number of
  nodes that aliases repeat is counted from the anchors' sizes (`MAX_ALIAS_NODES`), so an
  alias bomb ("billion laughs") is refused after a few hundred events;
- a key repeated in a mapping is an error naming both lines (PyYAML keeps the last silently);
- scalars get PyYAML's safe types (tags resolved by `SpecLoader`), nothing else: collections
  with a tag other than map/seq, and unknown scalar tags, are refused.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlmrun.display import clip, excerpt, sanitize
from mlmrun.errors import SpecError

Loc = tuple[Any, ...]
Marks = dict[Loc, tuple[int, int]]

MAX_SPEC_BYTES = 1 << 20
"""Largest spec file read (1 MiB); shipped specs are a few kB."""
MAX_NODES = 20_000
"""Most YAML nodes (scalars, lists, mappings, aliases) in a spec; shipped specs have at most a few hundred."""
MAX_ALIAS_NODES = 20_000
"""Most nodes that aliases may repeat in all (what a reader of the data would walk through)."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings."""
MAX_NUMBER_CHARS = 100
"""Longest number literal (PyYAML's int conversion of long or base-60 literals is slow)."""

MAX_LISTED = 50
"""Most repeated keys listed one by one; the rest are counted."""

KEY = ("<key>",)
"""Suffix of a YAML path whose mark is the key itself rather than its value (for unknown-key errors)."""

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
_NUMBER_START = set("+-.0123456789")
_NUMBER_CHARS = set("0123456789_:.+-eExXoObBabcdefABCDEF")
"""Characters of PyYAML's int/float literals: a long plain scalar of only these is refused unresolved,
because resolving it runs regular expressions that backtrack (quadratic on base-60 `1:30:30...`)."""


class SpecLoader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 booleans: only true/false, so keys like `on` and categories like yes/no stay strings."""


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _BudgetError(yaml.MarkedYAMLError):
    """A budget exceeded while scanning (before any event could be checked)."""


class _PyLoader(SpecLoader):
    """SpecLoader whose scanner refuses flow nesting deeper than `MAX_DEPTH` as soon as it sees it.

    PyYAML's scanner looks up to 1024 characters ahead for a possible key at every
    open bracket, at a cost growing with the nesting depth, so 20,000 `[` would take
    seconds before the first event reached the depth check of the builder.
    """

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        if self.flow_level >= MAX_DEPTH:
            raise _BudgetError(None, None, _too_deep(), self.get_mark())
        super().fetch_flow_collection_start(TokenClass)


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python parser (about 20 times slower)
    _Loader: Any = _PyLoader
else:
    class _CLoader(CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
        """libyaml's event parser (no nesting recursion, depth capped at 1000) with SpecLoader's resolver."""

        yaml_implicit_resolvers = SpecLoader.yaml_implicit_resolvers

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _Loader = _CLoader


def _too_deep() -> str:
    return f"lists and mappings nested more than {MAX_DEPTH} deep; a spec needs only a few levels"


def _at(source: str, mark: Any) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}"


def _dotted(path: Loc) -> str:
    return ".".join(str(p) for p in path)


def read_spec_text(path: Path, source: str) -> str:
    """The text of a spec file: a regular file of at most `MAX_SPEC_BYTES` bytes of UTF-8 (a BOM is allowed)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SpecError(f"{source}: cannot read spec ({exc.strerror or exc}); check the path (relative to the "
                        "working directory)") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError(f"{source}: is a folder, not a spec file; name a .yaml file")
    if not stat.S_ISREG(info.st_mode):
        raise SpecError(f"{source}: is not a regular file (a pipe or a device?); name a .yaml file")
    if info.st_size > MAX_SPEC_BYTES:
        raise SpecError(_too_big(source, info.st_size))
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{source}: cannot read spec ({exc.strerror or exc}); check the path (relative to the "
                        "working directory)") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(_too_big(source, len(raw)))
    if b"\0" in raw:
        line, col = _line_col(raw, raw.index(b"\0"))
        raise SpecError(f"{source}:{line}:{col}: contains NUL bytes, so it is not a text spec "
                        "(a binary file, or UTF-16 text); save the spec as UTF-8 text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line, col = _line_col(raw, start)
        raise SpecError(f"{source}:{line}:{col}: not UTF-8 text (byte 0x{raw[start]:02x}); "
                        "save the spec as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None


def _too_big(source: str, size: int) -> str:
    return (f"{source}: spec file is {size} bytes, more than the {MAX_SPEC_BYTES} allowed; "
            "a spec describes a model (data belong in the data file)")


def _line_col(raw: bytes, offset: int) -> tuple[int, int]:
    line_start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, len(raw[line_start:offset].decode("utf-8", "replace")) + 1


@dataclass
class _Anchor:
    value: Any
    size: int


@dataclass
class _Frame:
    """A list or mapping being built: its container, YAML path, size so far and (mappings) the pending key."""

    path: Loc
    container: Any
    mark: Any
    anchor: str | None
    size: int = 1
    key: Any = None
    has_key: bool = False
    key_lines: dict[Any, int] = field(default_factory=dict)
    merges: list[Any] = field(default_factory=list)


_MERGE = object()


class _Builder:
    """Python data from YAML events, with the line map, budgets and duplicate-key checks."""

    def __init__(self, loader: Any, source: str) -> None:
        self.loader = loader
        self.source = source
        self.marks: Marks = {}
        self.anchors: dict[str, _Anchor] = {}
        self.stack: list[_Frame] = []
        self.nodes = 0
        self.alias_nodes = 0
        self.problems: list[tuple[tuple[int, int], str]] = []
        self.root: Any = None

    def fail(self, mark: Any, message: str) -> SpecError:
        return SpecError(f"{_at(self.source, mark)}: {message}")

    def run(self) -> Any:
        documents = 0
        loader = self.loader
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)):
                continue
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise self.fail(event.start_mark, "a spec is one YAML document; remove this `---` and what follows "
                                    "(or put the second model in its own file)")
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                self.close()
                continue
            self.nodes += 1
            if self.nodes > MAX_NODES:
                raise self.fail(event.start_mark, f"more than {MAX_NODES} YAML nodes; a spec this large is refused "
                                "(a spec describes a model; data belong in the data file)")
            if isinstance(event, yaml.AliasEvent):
                self.alias(event)
            elif isinstance(event, yaml.ScalarEvent):
                self.scalar(event)
            else:
                self.open(event)
        if self.problems:
            self.problems.sort(key=lambda item: item[0])
            texts = [text for _, text in self.problems[:MAX_LISTED]]
            if len(self.problems) > MAX_LISTED:
                texts.append(f"mlmrun: ... and {len(self.problems) - MAX_LISTED} more repeated keys in {self.source}")
            raise SpecError(f"{len(self.problems)} problem(s) in {self.source}", texts)
        return self.root

    def child_path(self) -> Loc | None:
        """The YAML path of the node starting now, or None when it is a mapping key."""
        if not self.stack:
            return ()
        frame = self.stack[-1]
        if isinstance(frame.container, list):
            return frame.path + (len(frame.container),)
        if not frame.has_key:
            return None
        return frame.path + ((frame.key,) if frame.key is not _MERGE else ("<<",))

    def open(self, event: Any) -> None:
        tag = event.tag
        is_map = isinstance(event, yaml.MappingStartEvent)
        if tag not in (None, "!", _MAP_TAG if is_map else _SEQ_TAG):
            raise self.fail(event.start_mark, f"tag {sanitize(str(tag))} is not allowed in a spec; remove it "
                            "(a spec holds plain lists, mappings and values)")
        if len(self.stack) >= MAX_DEPTH:
            raise self.fail(event.start_mark, _too_deep())
        path = self.child_path()
        if path is None:
            raise self.fail(event.start_mark, "a key must be a plain name, not a list or mapping; write `name: value`")
        self.marks[path] = (event.start_mark.line + 1, event.start_mark.column + 1)
        self.stack.append(_Frame(path, {} if is_map else [], event.start_mark, event.anchor))

    def close(self) -> None:
        frame = self.stack.pop()
        value = frame.container
        if isinstance(value, dict) and frame.merges:
            for merged in frame.merges:
                for key, item in merged.items():
                    value.setdefault(key, item)
        if frame.anchor is not None:
            self.define(frame.anchor, _Anchor(value, frame.size), frame.mark)
        self.deliver(value, frame.size, frame.mark, frame.mark, marked=True)

    def define(self, anchor: str, target: _Anchor, mark: Any) -> None:
        if anchor in self.anchors:
            raise self.fail(mark, f"anchor &{sanitize(anchor)} is defined twice; give each anchor its own name")
        self.anchors[anchor] = target

    def alias(self, event: Any) -> None:
        target = self.anchors.get(event.anchor)
        if target is None:
            raise self.fail(event.start_mark, f"alias *{sanitize(event.anchor)} names no anchor defined before it "
                            "(an alias cannot refer to the list or mapping that contains it)")
        self.alias_nodes += target.size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise self.fail(event.start_mark, f"aliases repeat more than {MAX_ALIAS_NODES} YAML nodes "
                            "(an alias bomb?); write the repeated parts out, or use fewer aliases")
        if self.stack and not isinstance(self.stack[-1].container, list) and not self.stack[-1].has_key:
            raise self.fail(event.start_mark, "a key must be a plain name, not an alias; write `name: value`")
        self.deliver(target.value, target.size, event.start_mark, event.start_mark)

    def scalar(self, event: Any) -> None:
        tag = event.tag
        if (tag is None or tag == "!") and event.implicit[0] and len(event.value) > MAX_NUMBER_CHARS:
            number = event.value[0] in _NUMBER_START and set(event.value) <= _NUMBER_CHARS
            tag = "tag:yaml.org,2002:int" if number else "tag:yaml.org,2002:str"
        elif tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag in _NUMBER_TAGS and len(event.value) > MAX_NUMBER_CHARS:
            raise self.fail(event.start_mark, f"a number of {len(event.value)} characters; "
                            f"numbers in a spec have at most {MAX_NUMBER_CHARS} (quote it if it is text)")
        parent = self.stack[-1] if self.stack else None
        if tag == _MERGE_TAG:
            at_key = parent is not None and isinstance(parent.container, dict) and not parent.has_key
            value = _MERGE if at_key else event.value
        else:
            value = self.construct(tag, event)
        if event.anchor is not None:
            self.define(event.anchor, _Anchor(value, 1), event.start_mark)
        self.deliver(value, 1, event.start_mark, event.start_mark)

    def construct(self, tag: str, event: Any) -> Any:
        """The Python value of a scalar by PyYAML's safe constructors (unknown tags are refused there)."""
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        try:
            return self.loader.construct_object(node)
        except ValueError as exc:
            raise self.fail(event.start_mark, f"cannot read {excerpt(event.value)} ({clip(str(exc))})") from None
        finally:
            self.loader.constructed_objects.clear()
            self.loader.recursive_objects.clear()

    def deliver(self, value: Any, size: int, mark: Any, key_mark: Any, marked: bool = False) -> None:
        """Put a finished node into its parent (or make it the document); `marked`: its position is recorded."""
        position = (mark.line + 1, mark.column + 1)
        if not self.stack:
            self.root = value
            self.marks.setdefault((), position)
            return
        frame = self.stack[-1]
        frame.size += size
        if isinstance(frame.container, list):
            if not marked:
                self.marks[frame.path + (len(frame.container),)] = position
            frame.container.append(value)
            return
        if not frame.has_key:
            self.take_key(frame, value, key_mark)
            return
        frame.has_key = False
        if frame.key is _MERGE:
            merged = value if isinstance(value, list) else [value]
            if not all(isinstance(m, dict) for m in merged):
                raise self.fail(mark, "`<<:` merges a mapping: write `<<: *anchor` with an anchored mapping")
            frame.merges.extend(merged)
            return
        if not marked:
            self.marks[frame.path + (frame.key,)] = position
        frame.container[frame.key] = value

    def take_key(self, frame: _Frame, key: Any, mark: Any) -> None:
        frame.has_key, frame.key = True, key
        if key is _MERGE:
            return
        try:
            hash(key)
        except TypeError:
            raise self.fail(mark, "a key must be a plain name; write `name: value`") from None
        line = mark.line + 1
        if key in frame.key_lines:
            where = f"{_dotted(frame.path)}: " if frame.path else ""
            self.problems.append(((line, mark.column + 1), f"{_at(self.source, mark)}: {where}key {excerpt(str(key))} "
                                  f"repeats the key at line {frame.key_lines[key]}; keep one"))
        else:
            frame.key_lines[key] = line
        path = frame.path + (key,)
        self.marks[path] = self.marks[path + KEY] = (line, mark.column + 1)


def parse_yaml(text: str, source: str) -> tuple[Any, Marks]:
    """Parse YAML safely within the budgets; return the data and a map of YAML path -> (line, column)."""
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        line, col = _line_col(text.encode("utf-8"), len(text[: bad.start()].encode("utf-8")))
        raise SpecError(f"{source}:{line}:{col}: character {sanitize(bad.group())} is not allowed in YAML; "
                        "remove it (or write it as an escape in a double-quoted string)")
    loader: Any = None
    try:
        loader = _Loader(text)
        builder = _Builder(loader, source)
        data = builder.run()
    except _BudgetError as exc:
        raise SpecError(f"{_at(source, exc.problem_mark)}: {exc.problem}") from None
    except yaml.YAMLError as exc:  # MarkedYAMLError carries where and what; any other YAMLError only its text
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = _at(source, mark) if mark else source
        marked = isinstance(exc, yaml.MarkedYAMLError)
        problem = (exc.problem or exc.context if marked else str(exc)) or "syntax error"
        if "nesting depth" in problem:
            raise SpecError(f"{where}: {_too_deep()}") from None
        raise SpecError(f"{where}: not valid YAML ({clip(sanitize(problem))}); check indentation and quoting") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, builder.marks

