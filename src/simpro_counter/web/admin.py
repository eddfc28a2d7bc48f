"""The admin dashboard (`/admin`), behind ADMIN_TOKEN."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
