#!/usr/bin/env bash
# The DML-only role the ticketing roles connect as (as deploy/k8s/postgres.yaml
# declares it for CloudNativePG): it reads and writes rows but creates,
# alters or drops nothing; only `migrate` connects as the owner. The postgres
# image runs this once, when it initialises an empty data volume; on an
# existing volume run the SQL below by hand (docs/deploy.md).
#
# The default privileges cover every schema, not only public: `ticketing
# replay rebuild` builds read models in a shadow schema and moves them in.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner="$POSTGRES_USER" -v db="$POSTGRES_DB" -v app_password="$POSTGRES_APP_PASSWORD" <<'SQL'
CREATE ROLE ticketing_dml NOLOGIN;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE TEMPORARY ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO ticketing_dml;
GRANT USAGE ON SCHEMA public TO ticketing_dml;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ticketing_dml;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ticketing_dml;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ticketing_dml;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" GRANT USAGE, SELECT ON SEQUENCES TO ticketing_dml;
CREATE ROLE ticketing_app LOGIN IN ROLE ticketing_dml PASSWORD :'app_password';
SQL
