"""Stateless filter: a generator of transactions, an alert for the large ones, nothing else.

    machida --application-module alerts --out 127.0.0.1:7002
"""

import wallaroo


def application_setup(args):
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    limit = int(_option(args, "--transactions", "1000"))

    transactions = wallaroo.source("Alerts (stateless)",
                                   wallaroo.GenSourceConfig("transactions",
                                                            TransactionsGenerator(limit)))
    pipeline = (transactions
                .to(check_transaction)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_alert)))
    return wallaroo.build_application("Alerts (stateless)", pipeline)


def _option(args, flag, default):
    return args[args.index(flag) + 1] if flag in args else default


class Transaction:
    def __init__(self, tx_id, amount):
        self.id = tx_id
        self.amount = amount


class TransactionsGenerator:
    """Transaction i has amount ((i * 7919) % 2501) - 1250: deterministic, both signs."""

    def __init__(self, limit):
        self.limit = limit

    def initial_value(self):
        return Transaction(0, -1250)

    def apply(self, last):
        next_id = last.id + 1
        if next_id >= self.limit:
            return None
        return Transaction(next_id, (next_id * 7919) % 2501 - 1250)


@wallaroo.computation(name="check transaction")
def check_transaction(tx):
    if tx.amount > 1000:
        return f"Deposit Alert for tx {tx.id}: {tx.amount}"
    if tx.amount < -1000:
        return f"Withdrawal Alert for tx {tx.id}: {tx.amount}"
    return None


@wallaroo.encoder
def encode_alert(alert):
    return alert + "\n"
