"""Scoring protocols as objects: one interface (base.ScoringProtocol), one module per
protocol, one registry keyed by the Protocol enum. A new protocol: a module here, a
member of Protocol and a line in PROTOCOLS; scoring.py does not change."""

from __future__ import annotations

from enum import Enum

from acol_eval.scoring.protocols.base import ScoringProtocol
from acol_eval.scoring.protocols.native import NativeProtocol
from acol_eval.scoring.protocols.wsoleval import WsolevalProtocol
from acol_eval.util.errors import AcolError


class Protocol(str, Enum):
    WSOLEVAL = "wsoleval"
    NATIVE = "native"


PROTOCOLS: dict[Protocol, type[ScoringProtocol]] = {
    Protocol.WSOLEVAL: WsolevalProtocol,
    Protocol.NATIVE: NativeProtocol,
}


def parse_protocol(name: str | Protocol) -> Protocol:
    try:
        return Protocol(name)
    except ValueError:
        raise AcolError(f"unknown protocol {name!r}; use "
                        f"{' or '.join(p.value for p in Protocol)}") from None


def get_protocol(name: str | Protocol) -> ScoringProtocol:
    """The protocol object of a name (an AcolError for an unknown one)."""
    return PROTOCOLS[parse_protocol(name)]()


__all__ = ["PROTOCOLS", "Protocol", "ScoringProtocol", "get_protocol", "parse_protocol"]
