"""One message's life in the master: its ticket, its request, its outcome.

ticket: the master's record of one received message, from receive to outcome.
settler: decides each ticket's outcome and queues the bus work that carries it out.
"""
