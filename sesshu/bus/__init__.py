"""SQS and SNS: the bus protocol, its clients, and the calls made off the loop.

lane: a thread that runs one bus call at a time for the loop.
intake: the receive side; sender: the send side (its queues are the outbox).
"""
