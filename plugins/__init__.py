"""The plugins shipped with Sesshu (installed as the package sesshu_plugins)."""
