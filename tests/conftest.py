"""Test-wide settings."""

from hypothesis import settings

# No time limits per example: these machines are shared, and speed belongs in `make bench`.
settings.register_profile("default", deadline=None)
settings.load_profile("default")
