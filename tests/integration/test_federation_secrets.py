"""No private key material leaves the database unencrypted: a planted Federation Entity Key and
every key generated after it go through every job (in a worker: arguments, results and history
rows), a failing job, the CLI verbs, the served documents and the written files, with logs at
DEBUG; then no private parameter appears in any log line, table, file, output or error."""
import io
import sys
import json
from pathlib import Path

import pytest
import requests
from joserfc.jwk import ECKey

import actors
from domain import federation, federation_keys, federation_rotation
from storage import encryption, jobs, logs
from storage import federation as federation_rows
from tests.cli_runs import run_cli
from tests.conftest import wait_for
from tests.federation_support import federation_database, FEDERATION_ENV, served

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")


def everything_stored(sql) -> str:
    tables = sql("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                 "WHERE table_schema IN ('lamplighter', 'dramatiq') AND table_type = 'BASE TABLE'")
    return "\n".join(json.dumps(sql(f"SELECT to_jsonb(t) FROM {name} t"), default=str) for (name,) in tables)


def private_parameters(sql) -> list[str]:
    """Every private parameter of every key ever stored, decrypted here only to look for it."""
    ring = encryption.keyring()
    found = []
    for (sealed,) in sql("SELECT private_jwk FROM lamplighter.federation_keys WHERE private_jwk IS NOT NULL"):
        jwk = json.loads(ring.decrypt(sealed))
        found += [jwk[m] for m in PRIVATE_MEMBERS if m in jwk]
    return found


def run_job(actor, **kwargs) -> jobs.Job:
    message = actor.send(**kwargs)
    return wait_for(lambda: (job := jobs.get(message.message_id)).state in ("completed", "dead") and job,
                    message=f"{actor.actor_name} finished")


def test_a_planted_key_appears_in_no_log_line_row_file_output_or_error(database_url, broker, run_worker, sql,
                                                                       monkeypatch, capsys, tmp_path):
    env = {**FEDERATION_ENV, "LAMPLIGHTER_FEDERATION_WRITE_FILES": "true", "LAMPLIGHTER_FILES_URL": f"file://{tmp_path}",
           "LAMPLIGHTER_LOG_LEVEL": "DEBUG"}
    settings = federation_database(database_url, **env)
    broker.settings = settings
    for name, value in {**env, "DATABASE_URL": database_url, "LAMPLIGHTER_LOG_FORMAT": "json"}.items():
        monkeypatch.setenv(name, value)
    planted = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, private=True)
    planted_d = planted.as_dict(private=True)["d"]
    assert federation_rows.insert_key(key_set="federation", kid=planted.thumbprint(), alg="ES256",
                                      public_jwk=federation_keys.public_jwk(planted), state="active",
                                      private_jwk=encryption.keyring().encrypt(json.dumps(planted.as_dict(private=True))))
    stream = io.StringIO()
    logs.configure(log_format="json", level="DEBUG", stream=stream)
    printed, errors, secrets = [], [], set()
    try:
        run_worker(threads=2)
        done = [run_job(actors.federation.generate_files), run_job(actors.federation.refresh_cache)]
        assert [job.state for job in done] == ["completed", "completed"]
        with served() as base:
            for argv in (("federation", "rotate", "--federation"), ("federation", "rotate", "--protocol"),
                         ("federation", "keys", "--all"), ("federation", "keys", "--json"),
                         ("federation", "verify", "--url", base), ("federation", "rotate", "--protocol", "--abort"),
                         ("config",)):
                code, out, err = run_cli(monkeypatch, capsys, *argv)
                assert code == 0, err
                printed.append(out + err)
                secrets.update(private_parameters(sql))  # an aborted key's private half is erased: read it before
            printed += [requests.get(base + path, timeout=5).text for path in federation.WELL_KNOWN.values()]
        done.append(run_job(actors.federation.advance_rotations))
        # A job that fails (the file store's directory is gone): its error and traceback are stored.
        monkeypatch.setenv("LAMPLIGHTER_FILES_URL", f"file://{tmp_path}/missing")
        federation_database(database_url, **{**env, "LAMPLIGHTER_FILES_URL": f"file://{tmp_path}/missing"})
        failed = run_job(actors.federation.generate_files)
        assert failed.state == "dead" and "federation files not written" in failed.attempts[-1].error_message
        # Errors on the way to a key: a wrong encryption key, a signer in a message.
        encryption.reset()
        monkeypatch.setattr(encryption, "_keyring", encryption.Keyring.parse(
            "other:" + "A" * 43 + "="))
        with pytest.raises(encryption.EncryptionError) as refused:
            federation_keys.signer("federation").sign({}, {"iss": "x"})
        errors.append(str(refused.value) + repr(federation_keys.signer("federation")))
    finally:
        encryption.reset()
        logs.configure(log_format="json", level="INFO", stream=sys.__stderr__)

    secrets.update(private_parameters(sql))
    # The planted key, the protocol set's first key and both rotations' next keys (one aborted).
    assert planted_d in secrets and len(secrets) == 4
    lines = stream.getvalue()
    assert '"event": "federation_documents_generated"' in lines and planted.thumbprint() in lines  # logs captured
    stored = everything_stored(sql)
    assert planted.thumbprint() in stored and "enc:v1:" in stored  # the scan sees the key rows
    written = "\n".join(p.read_text(errors="replace") for p in Path(tmp_path).rglob("*") if p.is_file())
    assert "federation-entity-statement.jwt" in str(list(Path(tmp_path).rglob("*")))
    outputs = "\n".join(printed + errors)
    for secret in secrets:
        for where, text in (("a log line", lines), ("a stored row (history, jobs, audit...)", stored),
                            ("a written file", written), ("CLI output or a served document or an error", outputs)):
            assert secret not in text, f"a private key parameter in {where}"
