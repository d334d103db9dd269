"""Check the JUnit XML reports of CI's test runs, and print their counts.

`.ci/run` runs pytest twice (SQLite, then PostgreSQL + Redis, last). This exits 1 when a report
is missing, counts no test or counts a failure, so a run that executed nothing fails. With
`--quiet` it prints only on failure: the PostgreSQL suite's own pytest line stays the last
test-runner line of CI's output. Without, it ends on `ci: N passed, N failed, N skipped`.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) of one pytest JUnit XML report; errors count as failed."""
    # pytest's own report from this CI run, not input from anyone else: no XML attack surface.
    root = ET.parse(report).getroot()  # nosec B314
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = failed = skipped = 0
    for suite in suites:
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def main(args: list[str]) -> int:
    quiet = "--quiet" in args
    paths = [arg for arg in args if arg != "--quiet"]
    passed = failed = skipped = 0
    for name in paths:
        report = Path(name)
        if not report.is_file():
            print(f"ci: missing test report {report}", file=sys.stderr)
            return 1
        p, f, s = counts(report)
        if not quiet:
            print(f"{report.stem}: {p} passed, {f} failed, {s} skipped", file=sys.stderr)
        passed, failed, skipped = passed + p, failed + f, skipped + s
    ok = bool(passed) and not failed
    if not quiet or not ok:
        print(f"ci: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
