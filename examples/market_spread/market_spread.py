"""Market spread: two merged sources share keyed state per symbol; output is rare.

Market data (symbol, bid, offer) updates each symbol's state; an order for a symbol whose spread
is too wide is rejected, and only rejections are emitted.

    machida --application-module market_spread \
        --in 'Orders@127.0.0.1:7010,Market Data@127.0.0.1:7011' --out 127.0.0.1:7002
"""

import struct

import wallaroo

MARKET = struct.Struct(">4sdd")        # symbol, bid, offer
ORDER = struct.Struct(">I4scId")       # order id, symbol, side, quantity, price
REJECTION = struct.Struct(">I4sdd")    # order id, symbol, bid, offer


def application_setup(args):
    inputs = {name: (host, port) for name, host, port in wallaroo.tcp_parse_input_addrs(args)}
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]

    orders = (wallaroo.source("Orders", wallaroo.TCPSourceConfig(
                  "Orders", *inputs["Orders"], decode_order))
              .key_by(symbol_of))
    market = (wallaroo.source("Market Data", wallaroo.TCPSourceConfig(
                  "Market Data", *inputs["Market Data"], decode_market))
              .key_by(symbol_of))
    pipeline = (orders.merge(market)
                .to(check_market)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_rejection)))
    return wallaroo.build_application("Market Spread", pipeline)


class MarketData:
    __slots__ = ("bid", "offer", "symbol")

    def __init__(self, symbol, bid, offer):
        self.symbol, self.bid, self.offer = symbol, bid, offer


class Order:
    __slots__ = ("order_id", "price", "quantity", "side", "symbol")

    def __init__(self, order_id, symbol, side, quantity, price):
        self.order_id, self.symbol, self.side = order_id, symbol, side
        self.quantity, self.price = quantity, price


class SymbolData:
    def __init__(self):
        self.last_bid = 0.0
        self.last_offer = 0.0
        self.should_reject_trades = True


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_market(data):
    symbol, bid, offer = MARKET.unpack(data)
    return MarketData(symbol.decode().strip(), bid, offer)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_order(data):
    order_id, symbol, side, quantity, price = ORDER.unpack(data)
    return Order(order_id, symbol.decode().strip(), side.decode(), quantity, price)


@wallaroo.key_extractor
def symbol_of(message):
    return message.symbol


@wallaroo.state_computation(name="check market", state=SymbolData)
def check_market(message, state):
    if isinstance(message, MarketData):
        spread = message.offer - message.bid
        mid = (message.offer + message.bid) / 2
        state.last_bid, state.last_offer = message.bid, message.offer
        state.should_reject_trades = spread >= 0.05 or (mid > 0 and spread / mid >= 0.05)
        return None
    if state.should_reject_trades:
        return (message.order_id, message.symbol, state.last_bid, state.last_offer)
    return None


@wallaroo.encoder
def encode_rejection(rejection):
    order_id, symbol, bid, offer = rejection
    return REJECTION.pack(order_id, symbol.encode().ljust(4), bid, offer)
