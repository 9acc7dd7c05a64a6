"""The chaos runs use the end-to-end stacks' fixtures: a fresh PostgreSQL database (from the
root conftest) and a flushed Redis database per test."""

from tests.integration.conftest import stack_options, stack_redis_url

__all__ = ["stack_options", "stack_redis_url"]
