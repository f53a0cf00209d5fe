import random

import market_spread as ms

from wallaroo.testing import run

ARGS = ["--in", "Orders@127.0.0.1:7010,Market Data@127.0.0.1:7011", "--out", "127.0.0.1:7002"]
SYMBOLS = ["AAPL", "MSFT", "GOOG", "IBM", "T", "F"]


def make_inputs(seed=5, n=3000):
    rng = random.Random(seed)
    market, orders = [], []
    for i in range(n):
        sym = rng.choice(SYMBOLS)
        bid = round(rng.uniform(10, 100), 2)
        market.append((sym, bid, bid + rng.choice([0.01, 0.02, 0.04, 0.5, 7.0])))
        orders.append((i, rng.choice(SYMBOLS), b"B", rng.randint(1, 100), bid))
    return market, orders


def test_rejections_match_a_reference_computed_in_the_test():
    market, orders = make_inputs()
    m_payloads = [ms.MARKET.pack(s.encode().ljust(4), b, o) for s, b, o in market]
    o_payloads = [ms.ORDER.pack(i, s.encode().ljust(4), side, q, p) for i, s, side, q, p in orders]
    batch = 100
    result = run("market_spread", args=ARGS, batch_size=batch,
                 inputs={"Orders": o_payloads, "Market Data": m_payloads})

    # The harness feeds the sources in turn, one batch each (orders first, as declared).
    state = {}
    expected = []
    for start in range(0, len(orders), batch):
        for i, sym, _side, _q, _p in orders[start:start + batch]:
            bid, offer, reject = state.get(sym, (0.0, 0.0, True))
            if reject:
                expected.append(ms.REJECTION.pack(i, sym.encode().ljust(4), bid, offer))
        for sym, bid, offer in market[start:start + batch]:
            spread, mid = offer - bid, (offer + bid) / 2
            state[sym] = (bid, offer, spread >= 0.05 or spread / mid >= 0.05)
    got = result.output()
    assert got == expected
    assert 0 < len(got) < len(orders)
    assert set(result.states["check market"]) == set(SYMBOLS)
