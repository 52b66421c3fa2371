"""Plugins used only by the benchmarks (loaded by sesshud through plugin_path)."""
