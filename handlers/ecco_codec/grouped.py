"""Engine ``GroupedView`` (``ExplainRequest.grouping``) -> wire ``ecco.v1.GroupedView``."""

from __future__ import annotations

from ecco_engine.grouping import GroupedView, TokenGroup
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .arrays import to_matrix
from .fields import wire_enum


def _group(g: TokenGroup) -> pb.TokenGroup:
    return pb.TokenGroup(
        text=g.text,
        start=g.start,
        end=g.end,
        positions=list(g.positions),
        special=g.special,
        role=g.role or "",
        generated=g.generated,
    )


def to_grouped_view(view: GroupedView, *, float16: bool = False) -> pb.GroupedView:
    """The wire form of the grouped view; matrices float16 if the request asked for it."""
    return pb.GroupedView(
        unit=wire_enum(pb.GroupUnit.DESCRIPTOR, view.unit),
        groups=[_group(g) for g in view.groups],
        attributions=[
            pb.GroupedAttribution(
                method=a.method, target_groups=list(a.target_groups), scores=to_matrix(a.scores, float16=float16)
            )
            for a in view.attributions
        ],
    )
