"""Fuzzing: random programs and schedules checked against the reference, and invalid-input mutants."""
