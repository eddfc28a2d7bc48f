"""Public pages: the `<simpro-counter>` widget script and the demo homepage."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
