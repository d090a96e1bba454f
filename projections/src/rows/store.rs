//! Moving folded rows in and out of the read-model tables (the live ones,
//! or a rebuild's shadows): one `SELECT … = ANY` per table to load the rows
//! a batch continues; to write them back, per table, one multi-row
//! statement (`UNNEST` of column arrays) for the rows the table does not
//! have yet and one upsert for the rest. A rebuild, whose tables nobody
//! else writes, inserts its new rows by binary `COPY` instead (most of its
//! rows: it holds them in memory and writes each once, at the end).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{OrderRow, PaymentRow, Rows, TicketRow, Written};
use crate::ProjectionError;

/// The tables rows are loaded from and written to, quoted as needed.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub(crate) tickets: String,
    pub(crate) orders: String,
    pub(crate) payments: String,
}

impl Tables {
    /// The live read models, in the connection's schema.
    pub(crate) fn live() -> Self {
        Self {
            tickets: "ticket_views".to_owned(),
            orders: "order_views".to_owned(),
            payments: "payment_views".to_owned(),
        }
    }
}

/// Whether the loaded rows are locked until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Live tables: other workers may write them (during a rebalance), so
    /// the rows a batch continues are locked, in key order, and stay as
    /// loaded until its upsert.
    ForUpdate,
    /// A rebuild's shadow tables, which only the rebuild writes.
    None,
}

/// How rows the tables do not have yet are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewRows {
    /// `INSERT … ON CONFLICT DO NOTHING`: a row another worker inserted
    /// since the load is not overwritten; the batch fails as
    /// [`ProjectionError::Raced`] and is applied again on what is there.
    Insert,
    /// Binary `COPY`, for tables nobody else writes.
    Copy,
}

/// The COPY data sent at once: big enough to keep the round trips few,
/// small enough that a large flush is not held in memory twice.
const COPY_CHUNK: usize = 1 << 20;

/// How a load finds its rows: one primary-key lookup per id. Run as an
/// unnamed statement (`persistent(false)`), planned at each execution for
/// the table as it is: a prepared one switches to a generic plan, and one
/// made while the table was empty is a sequential scan, kept as the table
/// grows (about 100 ms a batch at 300,000 rows, even for one event).
const LOOKUP: &str = "AS t JOIN unnest($1::text[]) AS wanted(id) ON t.id = wanted.id";

/// Loads the rows of the given aggregates into `rows`.
pub(crate) async fn load(
    conn: &mut PgConnection,
    tables: &Tables,
    lock: Lock,
    rows: &mut Rows,
    tickets: &[String],
    orders: &[String],
    payments: &[String],
) -> sqlx::Result<()> {
    let lock = match lock {
        Lock::ForUpdate => "ORDER BY t.id FOR UPDATE OF t",
        Lock::None => "",
    };
    if !tickets.is_empty() {
        let sql = format!(
            "SELECT t.id, title, price_cents, user_id, order_id, version, last_sequence, updated_at \
             FROM {} {LOOKUP} {lock}",
            tables.tickets
        );
        for row in sqlx::query_as::<_, TicketRow>(&sql)
            .persistent(false)
            .bind(tickets)
            .fetch_all(&mut *conn)
            .await?
        {
            let row = TicketRow {
                written: Written::LOADED,
                ..row
            };
            let _ = rows.tickets.insert(row.id.clone(), row);
        }
    }
    if !orders.is_empty() {
        let sql = format!(
            "SELECT t.id, user_id, status, expires_at, ticket_id, ticket_title, ticket_price_cents, \
                    ticket_version, payment_id, version, last_sequence, placed_position, updated_at \
             FROM {} {LOOKUP} {lock}",
            tables.orders
        );
        for row in sqlx::query_as::<_, OrderRow>(&sql)
            .persistent(false)
            .bind(orders)
            .fetch_all(&mut *conn)
            .await?
        {
            let row = OrderRow {
                written: Written::LOADED,
                ..row
            };
            let _ = rows.orders.insert(row.id.clone(), row);
        }
    }
    if !payments.is_empty() {
        let sql = format!(
            "SELECT t.id, order_id, user_id, amount_cents, currency, status, stripe_id, \
                    failure_reason, version, last_sequence, updated_at \
             FROM {} {LOOKUP} {lock}",
            tables.payments
        );
        for row in sqlx::query_as::<_, PaymentRow>(&sql)
            .persistent(false)
            .bind(payments)
            .fetch_all(&mut *conn)
            .await?
        {
            let row = PaymentRow {
                written: Written::LOADED,
                ..row
            };
            let _ = rows.payments.insert(row.id.clone(), row);
        }
    }
    Ok(())
}

/// Writes the rows of `rows` changed since they were loaded or last
/// written (and marks them written); how many.
pub(crate) async fn flush(
    conn: &mut PgConnection,
    tables: &Tables,
    new_rows: NewRows,
    rows: &mut Rows,
) -> Result<u64, ProjectionError> {
    let mut written = 0;
    let (new, stored) = dirty(rows.tickets.values_mut());
    written += match new_rows {
        NewRows::Copy => {
            copy_rows(conn, &tables.tickets, TICKET_COLUMNS, new, ticket_tuple).await?
        }
        NewRows::Insert => {
            let new = new.into_iter().cloned().collect();
            store_tickets(conn, &tables.tickets, Conflict::Keep, new).await?
        }
    };
    written += store_tickets(conn, &tables.tickets, Conflict::Update, stored).await?;
    let (new, stored) = dirty(rows.orders.values_mut());
    written += match new_rows {
        NewRows::Copy => copy_rows(conn, &tables.orders, ORDER_COLUMNS, new, order_tuple).await?,
        NewRows::Insert => {
            let new = new.into_iter().cloned().collect();
            store_orders(conn, &tables.orders, Conflict::Keep, new).await?
        }
    };
    written += store_orders(conn, &tables.orders, Conflict::Update, stored).await?;
    let (new, stored) = dirty(rows.payments.values_mut());
    written += match new_rows {
        NewRows::Copy => {
            copy_rows(conn, &tables.payments, PAYMENT_COLUMNS, new, payment_tuple).await?
        }
        NewRows::Insert => {
            let new = new.into_iter().cloned().collect();
            store_payments(conn, &tables.payments, Conflict::Keep, new).await?
        }
    };
    written += store_payments(conn, &tables.payments, Conflict::Update, stored).await?;
    Ok(written)
}

/// What a multi-row write does with a row the table already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conflict {
    /// Overwrite it: the caller loaded (and, live, locked) that row.
    Update,
    /// Keep it, and fail the write as raced.
    Keep,
}

impl Conflict {
    /// The statement's `ON CONFLICT` clause; `set` lists the columns.
    fn clause(self, set: &str) -> String {
        match self {
            Conflict::Update => format!("ON CONFLICT (id) DO UPDATE SET {set}"),
            Conflict::Keep => "ON CONFLICT (id) DO NOTHING".to_owned(),
        }
    }

    /// Checks that every row of the write was written.
    fn check(self, table: &str, expected: usize, written: u64) -> Result<u64, ProjectionError> {
        if usize::try_from(written).ok() == Some(expected) {
            return Ok(written);
        }
        Err(ProjectionError::Raced {
            table: table.to_owned(),
            expected,
            written,
        })
    }
}

/// What [`flush`] needs of a row of any table.
trait Row: Clone {
    fn id(&self) -> &str;
    fn written(&mut self) -> &mut Written;
}

macro_rules! row {
    ($($row:ty),*) => {$(
        impl Row for $row {
            fn id(&self) -> &str {
                &self.id
            }
            fn written(&mut self) -> &mut Written {
                &mut self.written
            }
        }
    )*};
}

row!(TicketRow, OrderRow, PaymentRow);

/// One description per read-model table, its columns in order, from which
/// both writers are made: the binary `COPY` tuple (a rebuild's new rows)
/// and the multi-row `UNNEST` insert or upsert (the live path). The column
/// names are the row's field names; each field's type says how it is sent.
macro_rules! view_table {
    ($row:ty, $columns:ident, $tuple:ident, $store:ident, [$($field:ident),+ $(,)?]) => {
        const $columns: &[&str] = &[$(stringify!($field)),+];

        fn $tuple(out: &mut CopyBuffer, row: &$row) -> sqlx::Result<()> {
            out.tuple(i16::try_from($columns.len()).unwrap_or(i16::MAX));
            $( CopyField::copy(&row.$field, out)?; )+
            Ok(())
        }

        /// Writes `rows` with one multi-row statement; how many.
        async fn $store(
            conn: &mut PgConnection,
            table: &str,
            conflict: Conflict,
            rows: Vec<$row>,
        ) -> Result<u64, ProjectionError> {
            let Some(first) = rows.first() else {
                return Ok(0);
            };
            let types = [$(CopyField::sql_type(&first.$field)),+];
            let n = rows.len();
            $( let mut $field = Vec::with_capacity(n); )+
            for row in rows {
                $( $field.push(row.$field); )+
            }
            let sql = unnest_statement(table, $columns, &types, conflict);
            let result = sqlx::query(&sql)
                $( .bind($field) )+
                .execute(conn)
                .await?;
            conflict.check(table, n, result.rows_affected())
        }
    };
}

/// `INSERT INTO table (columns) SELECT * FROM UNNEST($1::type[], …)` with
/// the conflict clause (every column but the key updated, or none).
fn unnest_statement(table: &str, columns: &[&str], types: &[&str], conflict: Conflict) -> String {
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    let set: Vec<String> = columns
        .iter()
        .skip(1)
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM UNNEST({}) {}",
        columns.join(", "),
        arrays.join(", "),
        conflict.clause(&set.join(", "))
    )
}

/// A column value: its SQL type and its binary COPY encoding.
trait CopyField {
    fn sql_type(&self) -> &'static str;
    fn copy(&self, out: &mut CopyBuffer) -> sqlx::Result<()>;
}

impl CopyField for String {
    fn sql_type(&self) -> &'static str {
        "text"
    }
    fn copy(&self, out: &mut CopyBuffer) -> sqlx::Result<()> {
        out.text(self)
    }
}

impl CopyField for Option<String> {
    fn sql_type(&self) -> &'static str {
        "text"
    }
    fn copy(&self, out: &mut CopyBuffer) -> sqlx::Result<()> {
        out.optional_text(self.as_deref())
    }
}

impl CopyField for i64 {
    fn sql_type(&self) -> &'static str {
        "bigint"
    }
    fn copy(&self, out: &mut CopyBuffer) -> sqlx::Result<()> {
        out.int8(*self);
        Ok(())
    }
}

impl CopyField for DateTime<Utc> {
    fn sql_type(&self) -> &'static str {
        "timestamptz"
    }
    fn copy(&self, out: &mut CopyBuffer) -> sqlx::Result<()> {
        out.timestamptz(self)
    }
}

/// The changed rows, split into those to insert (borrowed) and those to
/// update (copied, for the upsert's column arrays); all marked written, as
/// they will be once the caller's transaction commits (a failure ends the
/// run, and these rows with it).
fn dirty<'a, R: Row + 'a>(rows: impl Iterator<Item = &'a mut R>) -> (Vec<&'a R>, Vec<R>) {
    let (mut new, mut stored) = (Vec::new(), Vec::new());
    for row in rows {
        let state = row.written();
        if !state.dirty {
            continue;
        }
        let was_stored = state.stored;
        *state = Written::LOADED;
        if was_stored {
            stored.push(row.clone());
        } else {
            new.push(&*row);
        }
    }
    (new, stored)
}

view_table!(
    TicketRow,
    TICKET_COLUMNS,
    ticket_tuple,
    store_tickets,
    [
        id,
        title,
        price_cents,
        user_id,
        order_id,
        version,
        last_sequence,
        updated_at
    ]
);

view_table!(
    OrderRow,
    ORDER_COLUMNS,
    order_tuple,
    store_orders,
    [
        id,
        user_id,
        status,
        expires_at,
        ticket_id,
        ticket_title,
        ticket_price_cents,
        ticket_version,
        payment_id,
        version,
        last_sequence,
        placed_position,
        updated_at
    ]
);

view_table!(
    PaymentRow,
    PAYMENT_COLUMNS,
    payment_tuple,
    store_payments,
    [
        id,
        order_id,
        user_id,
        amount_cents,
        currency,
        status,
        stripe_id,
        failure_reason,
        version,
        last_sequence,
        updated_at
    ]
);

/// Inserts `rows` into `table` with one binary `COPY`; how many. In key
/// order: the primary key's index then grows at its end rather than at
/// random pages, which halves the time.
async fn copy_rows<R: Row>(
    conn: &mut PgConnection,
    table: &str,
    columns: &[&str],
    mut rows: Vec<&R>,
    tuple: fn(&mut CopyBuffer, &R) -> sqlx::Result<()>,
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    rows.sort_unstable_by(|a, b| a.id().cmp(b.id()));
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {table} ({}) FROM STDIN WITH (FORMAT binary)",
            columns.join(", ")
        ))
        .await?;
    let mut out = CopyBuffer::new();
    for row in &rows {
        if let Err(error) = tuple(&mut out, row) {
            let _ = copy.abort("a row could not be encoded").await;
            return Err(error);
        }
        if out.bytes.len() >= COPY_CHUNK {
            let _ = copy.send(std::mem::take(&mut out.bytes)).await?;
        }
    }
    out.end();
    let _ = copy.send(out.bytes).await?;
    let copied = copy.finish().await?;
    Ok(copied)
}

/// PostgreSQL's binary COPY format (header, then per tuple its field count
/// and each field's length and bytes, then the trailer), for the column
/// types of the read models.
struct CopyBuffer {
    bytes: Vec<u8>,
}

impl CopyBuffer {
    fn new() -> Self {
        let mut bytes = Vec::with_capacity(COPY_CHUNK + 4096);
        bytes.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        bytes.extend_from_slice(&0_i32.to_be_bytes()); // flags
        bytes.extend_from_slice(&0_i32.to_be_bytes()); // header extension
        Self { bytes }
    }

    fn tuple(&mut self, fields: i16) {
        self.bytes.extend_from_slice(&fields.to_be_bytes());
    }

    fn text(&mut self, value: &str) -> sqlx::Result<()> {
        let length = i32::try_from(value.len())
            .map_err(|_| sqlx::Error::Encode("a text value over 2 GiB".into()))?;
        self.bytes.extend_from_slice(&length.to_be_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn optional_text(&mut self, value: Option<&str>) -> sqlx::Result<()> {
        match value {
            Some(value) => self.text(value),
            None => {
                self.bytes.extend_from_slice(&(-1_i32).to_be_bytes());
                Ok(())
            }
        }
    }

    fn int8(&mut self, value: i64) {
        self.bytes.extend_from_slice(&8_i32.to_be_bytes());
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// Microseconds since 2000-01-01 UTC, computed as sqlx encodes a bound
    /// `DateTime` (so sub-microsecond digits go the same way as in the
    /// live projector's statements).
    fn timestamptz(&mut self, value: &DateTime<Utc>) -> sqlx::Result<()> {
        let micros = (*value - postgres_epoch())
            .num_microseconds()
            .ok_or_else(|| sqlx::Error::Encode(format!("{value} is out of range").into()))?;
        self.int8(micros);
        Ok(())
    }

    fn end(&mut self) {
        self.bytes.extend_from_slice(&(-1_i16).to_be_bytes());
    }
}

fn postgres_epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(946_684_800, 0).unwrap_or_default()
}
