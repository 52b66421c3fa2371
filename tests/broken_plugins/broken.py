"""A plugin that cannot be imported: the daemon must refuse to start."""

raise ImportError("this plugin is broken on purpose")
