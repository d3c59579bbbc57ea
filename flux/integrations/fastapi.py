"""Flux in a FastAPI application: the lifespan of `flux.integrations.starlette`, and a
dependency that hands the engine to a path operation.

```python
app = FastAPI(lifespan=flux_lifespan(storage="sqlite:///./data/flux.db", flows=[order_flow]))

@app.post("/orders")
async def start(order: Order, flux: FluxEngineDep) -> dict[str, str]:
    result = await flux.execute(order_flow, order.model_dump(), id=order.id)
    return {"id": result.id, "status": result.status}
```
"""

from __future__ import annotations

from typing import Annotated

try:
    from fastapi import Depends
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "flux.integrations.fastapi needs FastAPI: pip install fastapi", name=exc.name
    ) from exc

from ..engine import FluxEngine
from .settings import FluxSettings
from .starlette import flux_lifespan, get_flux

__all__ = ["FluxEngineDep", "FluxSettings", "flux_lifespan", "get_flux"]

#: A path operation parameter annotated with this receives the application's engine.
FluxEngineDep = Annotated[FluxEngine, Depends(get_flux)]
