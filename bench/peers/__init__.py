"""The processes around the worker in end-to-end runs: senders and receivers.

Each one regenerates its workload's data from the shared seed (:mod:`bench.workloads`), logs
``ready`` on stderr once it can start, and prints one JSON object on stdout when it is done.
Times are ``time.monotonic()`` values, comparable between processes on one machine.
"""
