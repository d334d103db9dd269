"""Use cases: queries, rules, commits, cache reads and scheduled side effects."""
