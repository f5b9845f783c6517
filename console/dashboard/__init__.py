"""The operator dashboard at /dashboard: server-rendered pages over the same views as the CLI and
the API (pages.py), confirmed, CSRF-checked and audited actions (actions.py), and sign-in with
database sessions (login.py, session.py). Mounted by console/web/app.py's ROUTERS."""
from fastapi import APIRouter

from console.dashboard import actions, login, pages

router = APIRouter()
router.include_router(login.router)
router.include_router(actions.router)  # before pages: POST /dashboard/jobs/retry is not a job id
router.include_router(pages.router)

__all__ = ["router"]
