"""The dashboard's routes in one router, which console/web/app.py's create_app mounts."""
from fastapi import APIRouter

from console.dashboard import actions, login, pages

router = APIRouter()
router.include_router(login.router)
router.include_router(actions.router)  # before pages: POST /dashboard/jobs/retry is not a job id
router.include_router(pages.router)
