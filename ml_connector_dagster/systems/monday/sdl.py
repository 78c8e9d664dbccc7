"""The monday.com GraphQL schema of each API version the connector speaks, from the vendor's own SDL.

``sdl/<version>.graphql`` are copies of the SDL monday.com publishes per API version, as its own
tooling downloaded it into github.com/mondaycom/mcp (``packages/agent-toolkit/src/monday-graphql/
schema.graphql``, MIT): 2026-10 from commit fc03eb2, 2026-01 from commit 79f8242.
``sdl/2026-10.graphql`` is byte-identical to ``specs/monday-2026-10.graphql`` (a test checks). The client validates every document against the schema of its pinned version
before sending it; the sandbox simulator executes documents against the same schemas.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from graphql import GraphQLSchema, build_schema

__all__ = ["CURRENT_VERSION", "SUPPORTED_VERSIONS", "sdl_path", "sdl_schema"]

SDL_DIR = Path(__file__).with_name("sdl")
# monday.com versions are quarterly (YYYY-MM); these are the ones whose SDL ships with the connector.
SUPPORTED_VERSIONS: tuple[str, ...] = ("2026-01", "2026-10")
CURRENT_VERSION = "2026-10"


def sdl_path(version: str) -> Path:
    """Where the SDL of API ``version`` lives (ValueError for a version the connector does not ship)."""
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"monday.com API version {version!r} is not one of {', '.join(SUPPORTED_VERSIONS)}")
    return SDL_DIR / f"{version}.graphql"


@lru_cache(maxsize=len(SUPPORTED_VERSIONS))
def sdl_schema(version: str) -> GraphQLSchema:
    """The executable-shape schema of API ``version`` (built once per process: ~0.3 s each)."""
    return build_schema(sdl_path(version).read_text(encoding="utf-8"))
