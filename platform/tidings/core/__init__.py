"""Pure domain logic: no I/O, no clocks, no randomness (all passed in)."""
