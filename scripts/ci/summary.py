"""Print one closing line over the JUnit XML reports of CI's test runs.

`.ci/run` runs pytest twice (SQLite, then PostgreSQL + Redis) and then tools whose own closing
lines are not test counts (schemathesis ends on a pytest-style "N warnings in Xs" banner). This
line, printed last, states what the suites executed: `ci: N passed, N failed, N skipped`.
It exits 1 when a report is missing or counts no test, so a run that executed nothing fails.
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


def main(paths: list[str]) -> int:
    passed = failed = skipped = 0
    for name in paths:
        report = Path(name)
        if not report.is_file():
            print(f"ci: missing test report {report}", file=sys.stderr)
            return 1
        p, f, s = counts(report)
        print(f"{report.stem}: {p} passed, {f} failed, {s} skipped", file=sys.stderr)
        passed, failed, skipped = passed + p, failed + f, skipped + s
    print(f"ci: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if passed and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
