"""The operator dashboard at /dashboard: server-rendered pages over the same views as the CLI and
the API (pages.py), confirmed, CSRF-checked and audited actions (actions.py), and sign-in with
database sessions (login.py, session.py). Mounted by console/web/app.py's
create_app (routes.py)."""
