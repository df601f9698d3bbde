"""Contracts shared by every tickpipe stage: names, schema, settings, errors, logging."""
