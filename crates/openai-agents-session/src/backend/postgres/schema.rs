//! Installing and checking the schema: at open (and by `agent-session init`) the tables and
//! functions are created when the version table is missing, and an older version is upgraded
//! in place (its functions replaced), under an advisory lock so that processes opening at
//! once install it once; a newer version than this build knows, or a table of another shape,
//! is an error naming it.

use super::layout::{qualify, EXPECTED_COLUMNS, FUNCTIONS, SCHEMA_VERSION, TABLES, UPGRADE_FROM_1};
use super::*;

impl Inner {
    pub(super) async fn ensure_schema(&self) -> Result<()> {
        let op = Operation::Open;
        let (schema, prefix) = (self.schema.clone(), self.prefix.clone());
        let version_table = format!("\"{schema}\".\"{prefix}schema_version\"");
        let ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";\n{}\n{}\nINSERT INTO {version_table} (version) VALUES ({SCHEMA_VERSION}) ON CONFLICT DO NOTHING;",
            qualify(TABLES, &schema, &prefix),
            qualify(FUNCTIONS, &schema, &prefix)
        );
        let upgrade = format!(
            "{}\n{}\nINSERT INTO {version_table} (version) VALUES ({SCHEMA_VERSION}) ON CONFLICT DO NOTHING;",
            qualify(UPGRADE_FROM_1, &schema, &prefix),
            qualify(FUNCTIONS, &schema, &prefix)
        );
        let lock_key = format!("openai-agents-session:{schema}:{prefix}");
        // Tables of another shape under our names are named before anything is created.
        self.check_shape(false).await?;
        let found: Option<i32> = self
            .conn
            .with_client(op, |client| {
                Box::pin(async move {
                    let regclass = format!("{schema}.{prefix}schema_version");
                    let row = client
                        .query_one("SELECT to_regclass($1)::text", &[&regclass])
                        .await?;
                    let exists: Option<String> = row.get(0);
                    if exists.is_none() {
                        let tx = client.transaction().await?;
                        tx.query("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock_key])
                            .await?;
                        tx.batch_execute(&ddl).await?;
                        tx.commit().await?;
                    }
                    let version = format!("SELECT max(version) FROM {version_table}");
                    let row = client.query_one(&version, &[]).await?;
                    let found = row.get::<_, Option<i32>>(0);
                    if found.is_some_and(|v| v < SCHEMA_VERSION) {
                        // An older schema: its functions are replaced once, under the lock,
                        // by whichever opener gets there first.
                        let tx = client.transaction().await?;
                        tx.query("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock_key])
                            .await?;
                        let row = tx.query_one(&version, &[]).await?;
                        if row
                            .get::<_, Option<i32>>(0)
                            .is_some_and(|v| v < SCHEMA_VERSION)
                        {
                            tx.batch_execute(&upgrade).await?;
                        }
                        tx.commit().await?;
                        let row = client.query_one(&version, &[]).await?;
                        return Ok(row.get::<_, Option<i32>>(0));
                    }
                    Ok(found)
                })
            })
            .await?;
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(Error::new(
                    ErrorKind::UnsupportedFormat,
                    op,
                    format!(
                        "the schema {:?} (table prefix {:?}) is at version {v}; this build knows up to {SCHEMA_VERSION} (upgrade openai-agents-session)",
                        self.schema, self.prefix
                    ),
                ))
            }
            Some(_) => {}
            None => {
                return Err(Error::new(
                    ErrorKind::UnsupportedFormat,
                    op,
                    format!("{}.{}schema_version holds no version", self.schema, self.prefix),
                ))
            }
        }
        self.check_shape(true).await
    }

    /// Every table has the columns this build reads and writes, of the types it expects
    /// (`require_all`: and none is missing).
    async fn check_shape(&self, require_all: bool) -> Result<()> {
        let op = Operation::Open;
        let (schema, prefix) = (self.schema.clone(), self.prefix.clone());
        let rows = self
            .conn
            .with_client(op, |client| {
                Box::pin(async move {
                    client
                        .query(
                            "SELECT table_name::text, column_name::text, data_type::text
                               FROM information_schema.columns
                              WHERE table_schema = $1 AND table_name LIKE $2 ESCAPE '!'",
                            &[
                                &schema,
                                &format!(
                                    "{}%",
                                    prefix
                                        .replace('!', "!!")
                                        .replace('_', "!_")
                                        .replace('%', "!%")
                                ),
                            ],
                        )
                        .await
                })
            })
            .await?;
        for (table, columns) in EXPECTED_COLUMNS {
            let name = format!("{}{table}", self.prefix);
            let found: Vec<(String, String)> = rows
                .iter()
                .filter(|r| r.get::<_, String>(0) == name)
                .map(|r| (r.get::<_, String>(1), r.get::<_, String>(2)))
                .collect();
            if found.is_empty() && !require_all {
                continue;
            }
            if found.is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    op,
                    format!("table {}.{name} is missing (the schema version table is there); run `agent-session init` on an empty schema", self.schema),
                ));
            }
            for (column, kind) in *columns {
                match found.iter().find(|(c, _)| c == column) {
                    Some((_, k)) if k == kind => {}
                    Some((_, k)) => {
                        return Err(Error::new(
                            ErrorKind::Config,
                            op,
                            format!("table {}.{name} has the wrong shape: column {column} is {k}, expected {kind}", self.schema),
                        ))
                    }
                    None => {
                        return Err(Error::new(
                            ErrorKind::Config,
                            op,
                            format!("table {}.{name} has the wrong shape: it has no column {column} ({kind})", self.schema),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}
