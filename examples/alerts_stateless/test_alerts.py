from alerts import Transaction, TransactionsGenerator

from wallaroo.testing import run


def brute_force(limit):
    gen = TransactionsGenerator(limit)
    tx = gen.initial_value()
    alerts = []
    while tx is not None:
        if tx.amount > 1000:
            alerts.append(f"Deposit Alert for tx {tx.id}: {tx.amount}\n")
        elif tx.amount < -1000:
            alerts.append(f"Withdrawal Alert for tx {tx.id}: {tx.amount}\n")
        tx = gen.apply(tx)
    return alerts


def test_only_large_transactions_raise_alerts():
    result = run("alerts", args=["--out", "127.0.0.1:7002", "--transactions", "5000"])
    got = [p.decode() for p in result.output()]
    assert got == brute_force(5000)
    assert 0 < len(got) < 5000
    (segment,) = result.statistics.segments
    assert segment.messages_in == 5000


def test_generator_stops_on_none():
    assert TransactionsGenerator(1).apply(Transaction(0, 0)) is None
