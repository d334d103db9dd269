"""Durable work on procrastinate: the engine (engine.py), the jobs (work.py) and the relay that
derives jobs from the committed event record (relay.py). docs/ARCHITECTURE.md, "Event flow"."""
