"""A source connector process writing N keys (k0..k{K-1} round robin), slowly enough to be
interrupted. Usage: feeder.py N K DELAY --application-module counting_app --connector keys"""

import sys
import time

import wallaroo.experimental as wx

n, k, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
connector = wx.SourceConnector(args=sys.argv[4:], required_params=[], optional_params=[])
connector.connect()
for i in range(n):
    connector.write(f"k{i % k}")
    if i % 100 == 99:
        time.sleep(delay)
connector.close(timeout=60)
print("done", flush=True)
