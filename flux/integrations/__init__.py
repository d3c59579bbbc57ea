"""Where applications run Flux: web frameworks (`flux.integrations.starlette`, `.fastapi`)
and the settings they build their engine from (`FluxSettings`)."""

from .settings import FluxSettings

__all__ = ["FluxSettings"]
