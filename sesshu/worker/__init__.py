"""What runs in the worker processes; nothing here talks to AWS.

fork server: the clean process every worker is forked from.
keeper: a slot's process that outlives the plugin code and cleans up after it.
runner: a slot's process that runs plugin code, one job at a time.
"""
