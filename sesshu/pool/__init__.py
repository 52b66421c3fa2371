"""The master's side of the workers: the pool, its slots, and the frames between them.

slot: one worker's place in the pool, with its processes, channels and state.
"""
