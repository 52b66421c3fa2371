"""SQS and SNS: the bus protocol, its clients, and the calls made off the loop.

lane: a thread that runs one bus call at a time for the loop.
intake: the receive side; outbox: the send side's queued calls.
"""
