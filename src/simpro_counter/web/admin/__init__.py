"""The admin dashboard (`/admin`), behind ADMIN_TOKEN.

`session` signs the cookies, `throttle` slows token guessing, `guard` decides who may see
and do what, `state` builds the dashboard's JSON, `chart` draws the customer growth SVG,
`pages` serves its HTML and assets, `routes` ties them to URLs. The design and security
model are in docs/admin.md.
"""

from simpro_counter.web.admin.routes import router

__all__ = ["router"]
