"""Typed configs: one pydantic model per connector, with every key it accepts.

These modules import pydantic and the standard library only, never a client library, so
that a project can check every connection's config at load time without paying for (or
even having) the drivers of connectors it does not run.
"""
