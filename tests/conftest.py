"""Test-suite configuration."""

from hypothesis import settings

# Property tests draw the same examples on every run, so that CI's verdict
# does not depend on luck; ``--hypothesis-profile=explore`` draws new ones.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")
