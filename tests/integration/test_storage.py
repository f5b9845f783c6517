"""Cache table and key rotation against a real PostgreSQL, with the injectable clock."""
from cryptography.fernet import Fernet

from storage import cache, connection, encryption


def test_cache_expires_by_the_database_clock(database_url, sql):
    cache.put("jwks", {"keys": [1]}, ttl_seconds=60)
    cache.put("forever", "x")
    assert cache.get("jwks") == {"keys": [1]}
    # Move the database clock of this session forward instead of waiting.
    connection.database.execute_sql("SET lamplighter.clock_offset = '61'")
    assert cache.get("jwks") is None
    assert cache.get("forever") == "x"
    assert cache.prune_expired() == 1
    connection.database.execute_sql("RESET lamplighter.clock_offset")
    assert sql("SELECT key FROM lamplighter.cache") == [("forever",)]


def test_rotation_re_encrypts_in_batches_and_is_safe_to_rerun(database_url, sql):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    old_ring, ring = encryption.Keyring.parse(f"k1:{old}"), encryption.Keyring.parse(f"k2:{new},k1:{old}")
    sql("CREATE TABLE secrets (id int PRIMARY KEY, value text)")
    for i in range(25):
        sql("INSERT INTO secrets VALUES (%s, %s)", (i, old_ring.encrypt(f"pw{i}")))
    column = encryption.EncryptedColumn("public.secrets", "id", "value")
    conn = connection.raw_connection()
    from domain.maintenance import rotate_secrets

    counts = rotate_secrets([column], lambda c: encryption.rotate_batch(conn, c, ring, batch_size=10))
    assert counts == {"public.secrets.value": 25}
    assert rotate_secrets([column], lambda c: encryption.rotate_batch(conn, c, ring, batch_size=10)) == \
        {"public.secrets.value": 0}
    values = sql("SELECT id, value FROM secrets ORDER BY id")
    assert all(v.startswith("enc:v1:k2:") for _, v in values)
    assert [ring.decrypt(v) for _, v in values] == [f"pw{i}" for i in range(25)]


def test_every_named_query_prepares_against_the_migrated_schema(database_url):
    """Every named query of storage/sql/ parses and plans against the schema the migrations
    build (a renamed column or a dropped index's query shows up here, not in production)."""
    import psycopg2

    from storage.queries import SQL_DIRECTORY, _without_comments, prepared_statement, queries

    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    checked = 0
    try:
        for path in sorted(SQL_DIRECTORY.glob("*.sql")):
            for name, text in queries(path.stem).items():
                if _without_comments(text).split(None, 1)[0].upper() not in ("SELECT", "WITH", "INSERT", "UPDATE",
                                                                             "DELETE", "VALUES"):
                    continue  # COPY and LOCK cannot be prepared (test_bulk_enqueue, test_scheduler run them)
                statement = prepared_statement(path.stem, name)
                conn.cursor().execute(statement.prepare)
                conn.cursor().execute(f"DEALLOCATE {statement.name}")
                checked += 1
    finally:
        conn.close()
    assert checked >= 60
