"""The ids of a stream's events: 1, 2, ... in the order they were sent, and one more.

A constant of its own, below everything: the API's contract reads it without loading a
run's machinery (the `keys` command imports the contract's models).
"""

# The largest event id, and the id of the `error` that ends a message whose server died
# before it stored an end (kill -9). The ids sent live after the last stored phase were
# never stored, so no id a client may hold is known after a crash; one numbered past them
# all never names a second event, and ends every resume, whatever id it gives.
MAX_EVENT_ID = 999_999_999
