"""Windowed alerts: transactions per user, totalled over 9 s windows sliding by 3 s; a window
whose total exceeds the threshold (in either direction) raises an alert.

    machida --application-module alerts_windowed --out 127.0.0.1:7002 \
        [--threshold 2000] [--transactions 1000]
"""

import wallaroo

THRESHOLD = [2000.0]  # set by application_setup from --threshold


def application_setup(args):
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    THRESHOLD[0] = float(_option(args, "--threshold", "2000"))
    count = int(_option(args, "--transactions", "1000"))
    transactions = wallaroo.GenSourceConfig("transactions", TransactionsGenerator(count))
    pipeline = (wallaroo.source("Alerts (windowed)", transactions)
                .key_by(extract_user)
                .to(wallaroo.range_windows(wallaroo.seconds(9))
                    .with_slide(wallaroo.seconds(3))
                    .over(TotalAggregation))
                .to(check_total)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_alert)))
    return wallaroo.build_application("Alerts (windowed)", pipeline)


def _option(args, flag, default):
    return args[args.index(flag) + 1] if flag in args else default


class Transaction:
    def __init__(self, tx_id, user, amount):
        self.id = tx_id
        self.user = user
        self.amount = amount


def amount_of(i):
    """Transaction i's amount: deterministic, both signs, up to 1000."""
    return (i * 7919) % 2001 - 1000


class TransactionsGenerator:
    def __init__(self, limit, users=10):
        self.limit = limit
        self.users = users

    def initial_value(self):
        return Transaction(0, "user0", amount_of(0))

    def apply(self, last):
        i = last.id + 1
        if i >= self.limit:
            return None
        return Transaction(i, f"user{i % self.users}", amount_of(i))


@wallaroo.key_extractor
def extract_user(tx):
    return tx.user


class Total:
    def __init__(self, total=0):
        self.total = total


class TotalAggregation(wallaroo.Aggregation):
    def initial_accumulator(self):
        return Total()

    def update(self, tx, acc):
        acc.total += tx.amount

    def combine(self, acc1, acc2):
        return Total(acc1.total + acc2.total)

    def output(self, user, acc):
        return (user, acc.total)


@wallaroo.computation(name="check total")
def check_total(user_total):
    user, total = user_total
    if abs(total) > THRESHOLD[0]:
        return (user, total)
    return None


@wallaroo.encoder
def encode_alert(alert):
    user, total = alert
    return f"{user}:{total}\n"
