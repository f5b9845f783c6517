# Lamplighter's image: `docker run IMAGE release|web|worker|scheduler` runs that Procfile line
# (deploy/entrypoint.sh). Installs exactly what requirements.lock pins; runs as a non-root user.
# Give it DATABASE_URL (and the settings in deploy/app.json): a container's disk is not a place
# for the embedded development database.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin lamplighter
WORKDIR /app

# Dependencies first, from the lock alone: a code change does not re-install them.
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock

COPY pyproject.toml Procfile ./
COPY actors ./actors
COPY console ./console
COPY domain ./domain
COPY scheduler ./scheduler
COPY storage ./storage
COPY deploy ./deploy
RUN pip install --no-deps . && chmod 0755 deploy/entrypoint.sh
# The processes import the packages from /app (dramatiq puts the working directory first on
# sys.path), not the compiled copy pip put in site-packages; PYTHONDONTWRITEBYTECODE above and the
# non-root user keep them from caching bytecode at run time. Compile them here, once: otherwise every
# process start (each worker fork, each `lamplighter` verb) compiles them again (~0.25 s of CPU).
RUN python -m compileall -q actors console domain scheduler storage

USER lamplighter
ENV PORT=8000 \
    LAMPLIGHTER_LOG_FORMAT=json
EXPOSE 8000
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["web"]
