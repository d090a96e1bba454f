//! The shadow tables a rebuild writes: same names, columns, constraints and
//! indexes as the live read models, in a schema of their own, moved over
//! the live ones in one transaction at the end.

use sqlx::PgConnection;

use crate::rows::store::Tables;

/// The schema the shadow tables live in while a rebuild runs.
pub const SHADOW_SCHEMA: &str = "replay_shadow";

/// The shadow tables of one rebuild.
#[derive(Debug, Clone)]
pub(crate) struct Shadow {
    /// The schema of the live read models (the connection's current one).
    live: String,
    tables: Vec<&'static str>,
}

/// One index of a live table, as `pg_get_indexdef` prints it.
#[derive(Debug, sqlx::FromRow)]
struct IndexDef {
    name: String,
    definition: String,
    is_primary: bool,
    constraint_name: Option<String>,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl Shadow {
    /// The shadow of `tables`, whose live copies are in the current schema.
    pub(crate) async fn of(
        conn: &mut PgConnection,
        tables: Vec<&'static str>,
    ) -> sqlx::Result<Self> {
        let live: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(conn)
            .await?;
        Ok(Self { live, tables })
    }

    /// `name`'s shadow table, quoted and qualified.
    pub(crate) fn table(&self, name: &str) -> String {
        format!("{}.{}", quote(SHADOW_SCHEMA), quote(name))
    }

    /// The shadow tables, to load rows from and write them to.
    pub(crate) fn tables(&self) -> Tables {
        Tables {
            tickets: self.table("ticket_views"),
            orders: self.table("order_views"),
            payments: self.table("payment_views"),
        }
    }

    fn live_table(&self, name: &str) -> String {
        format!("{}.{}", quote(&self.live), quote(name))
    }

    /// Whether every shadow table is there (a rebuild to resume).
    pub(crate) async fn exists(&self, conn: &mut PgConnection) -> sqlx::Result<bool> {
        let found: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = ANY($2)",
        )
        .bind(SHADOW_SCHEMA)
        .bind(&self.tables)
        .fetch_one(conn)
        .await?;
        Ok(usize::try_from(found).unwrap_or_default() == self.tables.len())
    }

    /// Empty shadow tables, replacing any left by an earlier run. They get
    /// the live tables' constraints and primary keys now (the writes upsert
    /// on them) and their other indexes only before the swap, which is
    /// cheaper than maintaining them row by row.
    pub(crate) async fn create(&self, conn: &mut PgConnection) -> sqlx::Result<()> {
        self.discard(conn).await?;
        let _ = sqlx::query(&format!("CREATE SCHEMA {}", quote(SHADOW_SCHEMA)))
            .execute(&mut *conn)
            .await?;
        for table in &self.tables {
            let _ = sqlx::query(&format!(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
                 INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)",
                self.table(table),
                self.live_table(table)
            ))
            .execute(&mut *conn)
            .await?;
            for index in self.indexes(conn, table).await? {
                if index.constraint_name.is_some() {
                    self.copy_index(conn, table, &index).await?;
                }
            }
        }
        Ok(())
    }

    /// The live tables' remaining indexes, on the shadow tables.
    pub(crate) async fn add_indexes(&self, conn: &mut PgConnection) -> sqlx::Result<()> {
        for table in &self.tables {
            for index in self.indexes(conn, table).await? {
                if index.constraint_name.is_none() {
                    self.copy_index(conn, table, &index).await?;
                }
            }
        }
        Ok(())
    }

    /// Replaces every live table by its shadow, keeping names (tables,
    /// indexes, constraints), then drops the shadow schema. Run it in the
    /// transaction that locked the live tables: readers wait only for this.
    pub(crate) async fn swap(&self, conn: &mut PgConnection) -> sqlx::Result<()> {
        for table in &self.tables {
            let _ = sqlx::query(&format!("DROP TABLE {}", self.live_table(table)))
                .execute(&mut *conn)
                .await?;
            let _ = sqlx::query(&format!(
                "ALTER TABLE {} SET SCHEMA {}",
                self.table(table),
                quote(&self.live)
            ))
            .execute(&mut *conn)
            .await?;
        }
        self.discard(conn).await
    }

    /// Drops the shadow schema and whatever is in it.
    pub(crate) async fn discard(&self, conn: &mut PgConnection) -> sqlx::Result<()> {
        let _ = sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote(SHADOW_SCHEMA)
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn indexes(&self, conn: &mut PgConnection, table: &str) -> sqlx::Result<Vec<IndexDef>> {
        sqlx::query_as(
            "SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition, \
                    x.indisprimary AS is_primary, c.conname::text AS constraint_name \
             FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid \
             LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid \
             WHERE x.indrelid = $1::regclass \
             ORDER BY i.relname",
        )
        .bind(self.live_table(table))
        .fetch_all(conn)
        .await
    }

    /// Creates `index` of the live `table` on its shadow, under the same
    /// name (names are per schema), and makes it the same constraint.
    async fn copy_index(
        &self,
        conn: &mut PgConnection,
        table: &str,
        index: &IndexDef,
    ) -> sqlx::Result<()> {
        let definition = retarget(&index.definition, &self.table(table));
        let _ = sqlx::query(&definition).execute(&mut *conn).await?;
        if let Some(constraint) = &index.constraint_name {
            let kind = if index.is_primary {
                "PRIMARY KEY"
            } else {
                "UNIQUE"
            };
            let _ = sqlx::query(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {kind} USING INDEX {}",
                self.table(table),
                quote(constraint),
                quote(&index.name)
            ))
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// `CREATE [UNIQUE] INDEX name ON live.table USING …` made idempotent and
/// pointed at `target` instead.
fn retarget(definition: &str, target: &str) -> String {
    let Some((head, rest)) = definition.split_once(" ON ") else {
        return definition.to_owned();
    };
    let tail = rest.find(" USING ").map_or("", |at| &rest[at..]);
    let head = head.replacen(" INDEX ", " INDEX IF NOT EXISTS ", 1);
    format!("{head} ON {target}{tail}")
}

#[cfg(test)]
mod tests {
    use super::retarget;

    #[test]
    fn an_index_definition_is_pointed_at_the_shadow_table() {
        assert_eq!(
            retarget(
                "CREATE INDEX ticket_views_available ON public.ticket_views USING btree (id) WHERE (order_id IS NULL)",
                "\"replay_shadow\".\"ticket_views\""
            ),
            "CREATE INDEX IF NOT EXISTS ticket_views_available ON \"replay_shadow\".\"ticket_views\" USING btree (id) WHERE (order_id IS NULL)"
        );
        assert_eq!(
            retarget(
                "CREATE UNIQUE INDEX ticket_views_pkey ON public.ticket_views USING btree (id)",
                "s.t"
            ),
            "CREATE UNIQUE INDEX IF NOT EXISTS ticket_views_pkey ON s.t USING btree (id)"
        );
    }
}
