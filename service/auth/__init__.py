"""Who is asking: the principal every stored row belongs to and every query takes."""

from .principal import ANONYMOUS, Principal

__all__ = ["ANONYMOUS", "Principal"]
