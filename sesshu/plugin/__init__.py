"""Plugins as the daemon sees them: where they are found."""
