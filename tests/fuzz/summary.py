"""Count the outcomes of a fuzz log (MLMRUN_FUZZ_LOG): `python -m tests.fuzz.summary .fuzz/log.jsonl`."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from tests.fuzz.known import known_failure


def summarize(path: Path) -> str:
    """Cases per command and exit code, known and unknown failures, and one example of each distinct failure."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in records:  # classified again with today's list of known failures
        r["known"] = known_failure(r["problem"], r["stderr"], str(r["actions"])) if r["problem"] else None
    outcomes = Counter(f"{r['command']} exit {r['rc']}" for r in records)
    known = Counter(r["known"] for r in records if r["problem"] and r["known"])
    unknown = [r for r in records if r["problem"] and not r["known"]]
    lines = [f"fuzz: {sum(r['command'] == 'validate' for r in records)} cases, {len(records)} commands",
             *(f"  {k}: {v}" for k, v in sorted(outcomes.items())),
             f"  known failures (owned elsewhere): {sum(known.values())}",
             *(f"    {v} x {k}" for k, v in known.most_common()),
             f"  unknown failures: {len(unknown)}"]
    seen: set[str] = set()
    for r in unknown:
        key = r["problem"][:60]
        if key not in seen:
            seen.add(key)
            lines.append(f"    {r['command']} {r['spec']} {r['actions']}: {r['problem']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
