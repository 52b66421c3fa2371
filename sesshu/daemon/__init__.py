"""The daemon process: its command line, its assembly, and the supervisor's loop.

supervisor: the master's one loop, which turns received messages into jobs
and jobs into outcomes; everything here runs in the master process.
"""
