#!/bin/sh
# Runs once, on the first start of the compose PostgreSQL: a second database for the test suite,
# so `docker compose run tests` never touches the development data.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE ${POSTGRES_TEST_DB:-taskmanager_test} OWNER $POSTGRES_USER"
