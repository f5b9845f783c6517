"""Documents with classification and routing, tenant quotas, billing usage reports and signed
webhooks (issue 20): every row a tenant's (tenant_id NOT NULL, foreign key)."""
from storage.migrations import run_sql_file


def up(migrator, db):
    run_sql_file(db, "0015_documents.sql")
