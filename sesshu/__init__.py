"""Sesshu: an SQS job-worker daemon with crash-isolated plugin children.

This package must stay light to import: it is preloaded into the fork
server that starts the worker children, and children never import boto3.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
