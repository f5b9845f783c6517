"""A description of Lamplighter's schema read from PostgreSQL's catalog: tables, columns,
constraints, indexes, storage options, row-level security and its policies, functions, triggers
and views of the lamplighter and dramatiq schemas, one line each, sorted. A view is described by
its columns (the text PostgreSQL prints for it differs between versions). A partitioned table is described once, as its parent
(columns, constraints, indexes, triggers, partition key) and its default partition: the monthly
partitions depend on the month the database was migrated in, so they are left out.
tests/migrations/declared_schema.txt is the declared schema; after adding a migration,
regenerate it and review the diff:

    DATABASE_URL=postgresql://... python -m tests.migrations.catalog --write
"""
from __future__ import annotations

import sys
from pathlib import Path

DECLARED = Path(__file__).with_name("declared_schema.txt")
SCHEMAS = ("lamplighter", "dramatiq")

QUERIES = {
    "column": """
        SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
               || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
               || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
          AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraint": """
        SELECT c.relname || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
        FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND NOT c.relispartition
          AND co.contype <> 'n'  -- PostgreSQL 18 lists NOT NULL here too; columns already say it""",
    "index": """
        SELECT pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(schemas)s) AND NOT c.relispartition""",
    "table_options": """
        SELECT n.nspname || '.' || c.relname || ' ' || array_to_string(c.reloptions, ',')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND c.reloptions IS NOT NULL""",
    "function": """
        SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
               || pg_get_function_result(p.oid) || ' ' || md5(regexp_replace(p.prosrc, '\\s+', ' ', 'g'))
               -- who a function runs as, and with which search_path, is part of what it does
               || CASE WHEN p.prosecdef THEN ' SECURITY DEFINER' ELSE '' END
               || coalesce(' SET ' || array_to_string(p.proconfig, ' '), '')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%(schemas)s)""",
    "trigger": """
        SELECT pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND NOT t.tgisinternal AND NOT c.relispartition""",
    "partitioned": """
        SELECT n.nspname || '.' || c.relname || ' ' || pg_get_partkeydef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'p'""",
    "default_partition": """
        SELECT n.nspname || '.' || c.relname || ' OF ' || p.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_inherits i ON i.inhrelid = c.oid JOIN pg_class p ON p.oid = i.inhparent
        WHERE n.nspname = ANY(%(schemas)s) AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'""",
    "row_security": """
        SELECT n.nspname || '.' || c.relname || ' ENABLED'
               || CASE WHEN c.relforcerowsecurity THEN ' FORCED' ELSE '' END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND (c.relrowsecurity OR c.relforcerowsecurity)""",
    "policy": """
        SELECT schemaname || '.' || tablename || ' ' || policyname || ' ' || permissive || ' ' || cmd
               || ' TO ' || array_to_string(roles, ',') || coalesce(' USING ' || qual, '')
               || coalesce(' WITH CHECK ' || with_check, '')
        FROM pg_policies WHERE schemaname = ANY(%(schemas)s)""",
    "view": """
        SELECT n.nspname || '.' || c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'v'""",
}


def describe(conn) -> str:
    lines = []
    cur = conn.cursor()
    for kind, query in QUERIES.items():
        cur.execute(query, {"schemas": list(SCHEMAS)})
        lines += [f"{kind}: {row[0]}" for row in cur.fetchall()]
    return "\n".join(sorted(lines)) + "\n"


if __name__ == "__main__":
    import psycopg2

    from storage import connection, schema

    schema.migrate()
    text = describe(connection.raw_connection())
    if "--write" in sys.argv:
        DECLARED.write_text(text)
        print(f"wrote {DECLARED}")
    else:
        sys.stdout.write(text)
