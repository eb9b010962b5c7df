"""The attribution methods: the registry and the three kinds (``base``), and every registered method.

Importing this package registers every method; see ``base`` for capabilities and how to add one.
"""

from . import attention, gradient, perturbation  # noqa: F401  (registers the methods)
from .base import (
    REGISTRY,
    AttentionMethod,
    AttributionMethod,
    Batching,
    Forward,
    GradientMethod,
    GradientPoints,
    MethodCall,
    RowMethod,
    get_method,
    register,
    seeded,
)

__all__ = [
    "REGISTRY",
    "AttentionMethod",
    "AttributionMethod",
    "Batching",
    "Forward",
    "GradientMethod",
    "GradientPoints",
    "MethodCall",
    "RowMethod",
    "get_method",
    "register",
    "seeded",
]
